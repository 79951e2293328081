// Writes the generated CUDA source of GEMM instantiations for the standalone lab harness.
// usage: node bench/lab/gen.mjs OUTDIR   (reads dist/, so run `npx tsc -b` first)
import { writeFileSync, mkdirSync } from 'node:fs';
import { gemmSm90, maxStages } from '../../dist/compiler/templates/gemm.js';
const out = process.argv[2] ?? 'bench/lab/gen';
mkdirSync(out, { recursive: true });
const bf = { input: 'bf16', output: 'bf16' };
const f8 = { input: 'e4m3', output: 'bf16', epilogue: { alpha: true } };
const specs = [
  ['def224', { ...bf, bn: 224, stages: maxStages(224) }],
  ['co224', { ...bf, bn: 224, stages: maxStages(224, true), schedule: 'cooperative' }],
  ['co256', { ...bf, bn: 256, stages: maxStages(256, true), schedule: 'cooperative' }],
  ['co192', { ...bf, bn: 192, stages: maxStages(192, true), schedule: 'cooperative' }],
  ['pp160', { ...bf, bn: 160, stages: maxStages(160, true), schedule: 'pingpong' }],
  ['f8co224', { ...f8, bn: 224, stages: maxStages(224, true), schedule: 'cooperative' }],
  ['f8co256', { ...f8, bn: 256, stages: maxStages(256, true), schedule: 'cooperative' }],
  ['f8pp160', { ...f8, bn: 160, stages: maxStages(160, true), schedule: 'pingpong' }],
  ['f8def256', { ...f8, bn: 256, stages: maxStages(256) }],
];
const meta = [];
for (const [id, spec] of specs) {
  const a = gemmSm90(spec);
  const flags = [spec.schedule === 'cooperative' ? '-DLAB_COOP' : '', spec.input === 'e4m3' ? '-DLAB_FP8' : '']
    .filter(Boolean)
    .join(' ');
  writeFileSync(`${out}/${id}.cu`, (flags ? `// LAB_FLAGS: ${flags}\n` : '') + a.source);
  const persistent = spec.persistent || spec.schedule ? 1 : 0;
  meta.push(`${id} ${a.entry} ${a.threads} ${a.sharedBytes} ${a.spec.bn} ${a.bk} ${persistent}`);
}
writeFileSync(`${out}/variants.txt`, meta.join('\n') + '\n');
console.log(meta.join('\n'));
