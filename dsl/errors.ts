// The one error class every layer throws for a mistake the user can fix (bad config, bad DSL source,
// bad checkpoint, wrong tensor shape, no GPU). The CLI prints such errors as a single line and exits 1
// (2 for usage errors); anything else is a bug and gets its stack trace. It lives in dsl/ because dsl/
// is the one module every other layer may import.

const USER_ERROR = Symbol.for('sfc.userError');

export class SfcError extends Error {
  readonly [USER_ERROR] = true;
  /** Process exit code the CLI uses for this error: 1 for failures, 2 for usage errors. */
  readonly exitCode: number;
  /** Optional hint printed after the message, e.g. "run `sfc doctor`". */
  readonly hint: string | undefined;

  constructor(message: string, options: { exitCode?: number; hint?: string; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'SfcError';
    this.exitCode = options.exitCode ?? 1;
    this.hint = options.hint;
  }
}

/** True for errors the user can fix (printed without a stack trace). */
export function isUserError(e: unknown): e is SfcError {
  // A brand, not instanceof: the CLI (dist/) and tests (sources) may hold different copies of this class.
  return typeof e === 'object' && e !== null && (e as Record<symbol, unknown>)[USER_ERROR] === true;
}
