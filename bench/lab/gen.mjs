// Writes the generated CUDA source of GEMM instantiations for the standalone lab harness.
// usage: node bench/lab/gen.mjs OUTDIR   (reads dist/, so run `npx tsc -b` first)
import { writeFileSync, mkdirSync } from 'node:fs';
import { gemmSm90, maxStages } from '../../dist/compiler/templates/gemm.js';
const out = process.argv[2] ?? 'bench/lab/gen';
mkdirSync(out, { recursive: true });
const specs = [
  ['def224', { input: 'bf16', output: 'bf16', bn: 224, stages: maxStages(224) }],
  ['co224', { input: 'bf16', output: 'bf16', bn: 224, stages: maxStages(224, true), schedule: 'cooperative' }],
  ['co256', { input: 'bf16', output: 'bf16', bn: 256, stages: maxStages(256, true), schedule: 'cooperative' }],
  ['co192', { input: 'bf16', output: 'bf16', bn: 192, stages: maxStages(192, true), schedule: 'cooperative' }],
];
const meta = [];
for (const [id, spec] of specs) {
  const a = gemmSm90(spec);
  writeFileSync(`${out}/${id}.cu`, (spec.schedule === 'cooperative' ? '// LAB_FLAGS: -DLAB_COOP\n' : '') + a.source);
  const persistent = !!(spec.persistent || spec.schedule);
  meta.push(`${id} ${a.entry} ${a.threads} ${a.sharedBytes} ${a.spec.bn} ${a.bk} ${persistent ? 1 : 0}`);
}
writeFileSync(`${out}/variants.txt`, meta.join('\n') + '\n');
console.log(meta.join('\n'));
