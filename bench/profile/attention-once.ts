// One launch of the flash-attention template on the benchmark shape, for profilers (ncu):
//   ncu -k regex:sfc_attn --launch-skip 2 --launch-count 1 node dist/bench/profile/attention-once.js [bc] [stages] [lkv]
import { attentionSm90 } from '../../compiler/templates/attention.js';
import { bf16 } from '../../dsl/dtypes.js';
import { CudaDevice } from '../../runtime/cuda.js';
import { runAttention } from '../../runtime/attention.js';
import { Tensor } from '../../runtime/tensor.js';

const [bc, stages, lkv] = [
  Number(process.argv[2] ?? 128),
  Number(process.argv[3] ?? 3),
  Number(process.argv[4] ?? 4680),
];
const dev = CudaDevice.open(0);
const art = attentionSm90({ input: 'bf16', headDim: 128, bc: bc as 128, stages });
const rand = (shape: number[]) =>
  Tensor.from(
    dev,
    bf16,
    shape,
    Float32Array.from({ length: shape.reduce((a, b) => a * b) }, () => Math.random() * 2 - 1),
  );
const q = rand([1, 4680, 12, 128]);
const k = rand([1, lkv, 12, 128]);
const v = rand([1, lkv, 12, 128]);
const o = Tensor.empty(dev, bf16, [1, 4680, 12, 128]);
for (let i = 0; i < 4; i++) runAttention(art, { q, k, v, o });
dev.synchronize();
console.log(`ran ${art.name} 4 times`);
