// Where the installed sfc package lives, so data shipped with it (configs, DSL kernel sources, the
// native addon) is found the same way from sources (tests) and from dist/ (the CLI).
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The sfc package root: the nearest folder above `fromUrl` whose package.json is named "sfc". */
export function packageRoot(fromUrl: string = import.meta.url): string {
  let dir = dirname(fileURLToPath(fromUrl));
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg)) {
      try {
        if ((JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'sfc') return dir;
      } catch {
        // an unreadable package.json above us is not ours; keep walking
      }
    }
    const up = dirname(dir);
    if (up === dir) throw new Error(`sfc package root not found above ${fromUrl}`);
    dir = up;
  }
}
