// Row softmax (numerically stable: subtract the row max), float32 statistics.
import {
  arange,
  cast,
  exp,
  f32,
  kernel,
  load,
  max,
  programId,
  store,
  sum,
  type bf16,
  type Const,
  type i32,
  type Ptr,
} from '../../dsl/kernel.js';

export const softmax = kernel((x: Ptr<bf16>, y: Ptr<bf16>, N: i32, BLOCK: Const<1024>) => {
  const row = programId(0);
  const cols = arange(0, BLOCK);
  const m = cols < N;
  const v = cast(load(x, row * N + cols, m, -Infinity), f32);
  const e = m ? exp(v - max(v)) : 0;
  store(y, row * N + cols, e / sum(e), m);
});
