// The public DSL surface. Kernel and layer source imports from here.
export * from './kernel.js';
export { dtypes, dtypeOf, type DType, type DTypeName } from './dtypes.js';
