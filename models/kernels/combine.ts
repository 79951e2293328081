// Linear combinations of float32 tensors, out = sum_k c_k * t_k over one to four flat inputs: the
// per-element half of the schedulers and solvers (models/schedulers), whose coefficients are computed
// on the host. One kernel per arity, so a two-term update reads two tensors, not four. `out` may be
// one of the inputs (each element is read before it is written).
import { arange, kernel, load, programId, store, type Const, type f32, type i32, type Ptr } from '../../dsl/kernel.js';

/** out = ca * a */
export const combine1 = kernel((a: Ptr<f32>, out: Ptr<f32>, ca: f32, n: i32, BLOCK: Const<1024>) => {
  const i = programId(0) * BLOCK + arange(0, BLOCK);
  const m = i < n;
  store(out, i, ca * load(a, i, m, 0), m);
});

/** out = ca * a + cb * b */
export const combine2 = kernel(
  (a: Ptr<f32>, b: Ptr<f32>, out: Ptr<f32>, ca: f32, cb: f32, n: i32, BLOCK: Const<1024>) => {
    const i = programId(0) * BLOCK + arange(0, BLOCK);
    const m = i < n;
    store(out, i, ca * load(a, i, m, 0) + cb * load(b, i, m, 0), m);
  },
);

/** out = ca * a + cb * b + cc * c */
export const combine3 = kernel(
  (a: Ptr<f32>, b: Ptr<f32>, c: Ptr<f32>, out: Ptr<f32>, ca: f32, cb: f32, cc: f32, n: i32, BLOCK: Const<1024>) => {
    const i = programId(0) * BLOCK + arange(0, BLOCK);
    const m = i < n;
    store(out, i, ca * load(a, i, m, 0) + cb * load(b, i, m, 0) + cc * load(c, i, m, 0), m);
  },
);

/** out = ca * a + cb * b + cc * c + cd * d */
export const combine4 = kernel(
  (
    a: Ptr<f32>,
    b: Ptr<f32>,
    c: Ptr<f32>,
    d: Ptr<f32>,
    out: Ptr<f32>,
    ca: f32,
    cb: f32,
    cc: f32,
    cd: f32,
    n: i32,
    BLOCK: Const<1024>,
  ) => {
    const i = programId(0) * BLOCK + arange(0, BLOCK);
    const m = i < n;
    store(out, i, ca * load(a, i, m, 0) + cb * load(b, i, m, 0) + cc * load(c, i, m, 0) + cd * load(d, i, m, 0), m);
  },
);
