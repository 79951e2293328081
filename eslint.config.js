// Lint rules, including the layer order of DESIGN.md section 1, enforced per folder:
//   dsl <- compiler;  dsl <- runtime <- models <- trainers;  configs and media beside (dsl only);  cli on top.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const layers = {
  dsl: [],
  configs: ['dsl'],
  compiler: ['dsl'],
  runtime: ['dsl'],
  models: ['dsl', 'runtime', 'configs'],
  media: ['dsl'],
  trainers: ['dsl', 'runtime', 'models', 'configs', 'media'],
  bench: ['dsl', 'compiler', 'runtime', 'models', 'configs', 'media'],
  cli: ['dsl', 'compiler', 'runtime', 'models', 'trainers', 'configs', 'bench', 'media'],
};
const all = Object.keys(layers);

const layerRules = Object.entries(layers).map(([layer, allowed]) => ({
  files: [`${layer}/**/*.ts`],
  rules: {
    'no-restricted-imports': [
      'error',
      {
        patterns: all
          .filter((other) => other !== layer && !allowed.includes(other))
          .map((other) => ({
            group: [`../${other}/*`, `../../${other}/*`, `../../../${other}/*`, `../${other}`, `../../${other}`],
            message: `${layer}/ may not import ${other}/ (layer order: see DESIGN.md and ${layer}/README.md)`,
          })),
      },
    ],
  },
}));

export default tseslint.config(
  { ignores: ['dist/**', 'build/**', 'node_modules/**', '.gpu/**', 'test/artifacts/**', 'bench/results/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { process: 'readonly', console: 'readonly', Buffer: 'readonly', URL: 'readonly' } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
      'no-constant-condition': ['error', { checkLoops: false }],
    },
  },
  ...layerRules,
  {
    // the demo page's script runs in the browser
    files: ['cli/demo/**/*.js'],
    languageOptions: {
      sourceType: 'script',
      globals: Object.fromEntries(
        ['document', 'location', 'WebSocket', 'Blob', 'createImageBitmap', 'setTimeout', 'clearTimeout'].map((g) => [
          g,
          'readonly',
        ]),
      ),
    },
  },
);
