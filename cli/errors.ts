// How the CLI reports failures: a user mistake is one line on stderr (no stack trace unless
// SFC_DEBUG=1) and exit code 1 (2 for usage errors); anything else is a bug and shows its stack.
import { isUserError } from '../dsl/errors.js';

export function reportError(e: unknown, stderr: (s: string) => void, debug: boolean): number {
  if (isUserError(e)) {
    stderr(`sfc: error: ${e.message}\n`);
    if (e.hint) stderr(`sfc: hint: ${e.hint}\n`);
    if (debug && e.stack) stderr(`${e.stack}\n`);
    return e.exitCode;
  }
  const err = e instanceof Error ? e : new Error(String(e));
  stderr(`sfc: internal error: ${err.message}\n`);
  stderr(
    debug
      ? `${err.stack ?? ''}\n`
      : 'sfc: this is a bug in sfc; rerun with SFC_DEBUG=1 for the stack trace and report it\n',
  );
  return 1;
}
