// IR passes run after lowering: common-subexpression elimination (value numbering over pure ops,
// scoped to the control-flow region a value is defined in) and dead-code elimination.
import { eliminateDeadCode } from './frontend.js';
import type { KernelIR, Stmt, Value } from './ir.js';

const impure = new Set(['load', 'var.get', 'reduce']);

export function cse(k: KernelIR): KernelIR {
  const replace = new Map<number, Value>();
  const sub = (v: Value): Value => replace.get(v.id) ?? v;
  const keyOf = (v: Value): string => {
    const { id: _id, args, span: _span, type, ...attrs } = v;
    return JSON.stringify([
      attrs,
      type,
      args.map((a) => (a.op === 'const' ? `c${a.value}:${a.type.dtype}` : a.op === 'param' ? `p${a.index}` : a.id)),
    ]);
  };
  const rewriteValue = (v: Value): Value => {
    const args = v.args.map(sub);
    return args.every((a, i) => a === v.args[i]) ? v : ({ ...v, args } as Value);
  };
  const region = (stmts: Stmt[], outer: Map<string, Value>): Stmt[] => {
    const seen = new Map(outer);
    const out: Stmt[] = [];
    for (const s of stmts) {
      switch (s.kind) {
        case 'def': {
          const v = rewriteValue(s.value);
          if (!impure.has(v.op)) {
            const key = keyOf(v);
            const prior = seen.get(key);
            if (prior) {
              replace.set(s.value.id, prior);
              continue;
            }
            seen.set(key, v);
          }
          if (v !== s.value) replace.set(s.value.id, v);
          out.push({ ...s, value: v });
          break;
        }
        case 'store':
          out.push({ ...s, offsets: sub(s.offsets), value: sub(s.value), mask: s.mask ? sub(s.mask) : null });
          break;
        case 'var':
          out.push({ ...s, init: sub(s.init) });
          break;
        case 'assign':
          out.push({ ...s, value: sub(s.value) });
          break;
        case 'for':
          out.push({ ...s, start: sub(s.start), end: sub(s.end), step: sub(s.step), body: region(s.body, seen) });
          break;
        case 'if':
          out.push({ ...s, cond: sub(s.cond), then: region(s.then, seen), else: region(s.else, seen) });
          break;
        case 'return':
          out.push(s);
      }
    }
    return out;
  };
  return { ...k, body: eliminateDeadCode(region(k.body, new Map())) };
}
