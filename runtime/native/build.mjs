// Builds the native addon with cmake-js against the node-api-headers package (no header download),
// into build/Release/sfc_native.node. Skips the build when the output is newer than every source.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = dirname(dirname(here));
const out = join(root, 'build', 'Release', 'sfc_native.node');
const sources = [join(here, 'CMakeLists.txt'), ...readdirSync(join(here, 'src')).map((f) => join(here, 'src', f))];
if (
  existsSync(out) &&
  sources.every((s) => statSync(s).mtimeMs < statSync(out).mtimeMs) &&
  !process.argv.includes('--force')
) {
  console.log('sfc native addon is up to date');
  process.exit(0);
}
const require = createRequire(import.meta.url);
const cmakeJs = join(dirname(require.resolve('cmake-js/package.json')), 'bin', 'cmake-js');
const addonApi = dirname(require.resolve('node-addon-api/package.json'));
execFileSync(
  process.execPath,
  [
    cmakeJs,
    'compile',
    '--directory',
    here,
    '--out',
    join(root, 'build'),
    `--CDNODE_ADDON_API_DIR=${addonApi}`,
    '--log-level',
    'warn',
  ],
  { stdio: 'inherit', cwd: root },
);
console.log(`built ${out}`);
