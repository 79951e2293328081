import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../dsl/paths.js';

export function version(): string {
  const pkg = JSON.parse(readFileSync(join(packageRoot(import.meta.url), 'package.json'), 'utf8')) as {
    version: string;
  };
  return pkg.version;
}
