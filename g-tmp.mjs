import { gemmSm90, maxStages } from './dist/compiler/templates/gemm.js';
import { compileCuda } from './dist/compiler/nvcc.js';
import { writeFileSync } from 'node:fs';
for (const [input, output, bn, epi] of [
  ['bf16', 'bf16', 256, {}],
  ['e4m3', 'bf16', 256, { alpha: true, colScale: true }],
  ['bf16', 'f32', 128, { bias: 'bf16', activation: 'gelu_tanh' }],
  ['bf16', 'f32', 192, { gatedResidual: { residual: 'f32' } }],
]) {
  const art = gemmSm90({ input, output, bn, stages: maxStages(bn), epilogue: epi });
  writeFileSync('/tmp/gemm.cu', art.source);
  const t = Date.now();
  try {
    const r = compileCuda({ source: art.source, arch: 'sm_90a', name: 'gemm.cu' });
    console.log(art.entry, art.sharedBytes, JSON.stringify(r.reports), Date.now() - t, 'ms');
    const warn = r.log.split('\n').filter((l) => /warn|serializ/i.test(l));
    if (warn.length) console.log(warn.join('\n'));
  } catch (e) {
    console.log(e.message.slice(0, 3000));
  }
}
