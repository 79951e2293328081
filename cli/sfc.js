#!/usr/bin/env node
// The `sfc` executable: runs the compiled CLI from dist/. Kept as plain JS so `npx sfc` works the
// moment `npm run build` has run, and says what to do when it has not.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const main = join(root, 'dist', 'cli', 'main.js');
if (!existsSync(main)) {
  process.stderr.write('sfc: error: sfc is not built yet; run `npm run build` in ' + root + '\n');
  process.exit(1);
}
const { run } = await import(pathToFileURL(main).href);
process.exitCode = await run(process.argv.slice(2));
