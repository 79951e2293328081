// `sfc demo` in headless Chromium (Debian's chromium, driven by playwright-core) against the tiny model
// on the CPU: load the page, start, see frames drawn (a non-blank canvas, the frame counter rising),
// switch the prompt mid-stream, stop, and save a screenshot under test/artifacts/. Skipped where no
// Chromium is installed (CHROMIUM_PATH names another binary). The server runs as `sfc demo` in a child
// process (built dist/: `npm run build`), so its synchronous chunks do not stall the browser driver.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packageRoot } from '../../dsl/paths.js';

const candidates = [process.env.CHROMIUM_PATH, '/usr/bin/chromium', '/usr/bin/chromium-browser'];
const chromiumPath = candidates.find((p): p is string => !!p && existsSync(p));

describe.skipIf(!chromiumPath)('sfc demo in a browser', () => {
  let server: ChildProcess;
  let url: string;
  let browser: Browser;
  let stderr = '';

  beforeAll(async () => {
    const root = packageRoot(import.meta.url);
    const cache = join(mkdtempSync(join(tmpdir(), 'sfc-demo-browser-')), 'cache');
    const args = ['demo', '--model', 'tiny', '--device', 'cpu', '--port', '0'];
    server = spawn(process.execPath, [join(root, 'cli', 'sfc.js'), ...args], {
      env: { ...process.env, SFC_CACHE_DIR: cache },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    server.stderr!.on('data', (d: Buffer) => void (stderr += d.toString()));
    url = await new Promise<string>((resolve, reject) => {
      let out = '';
      server.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        const m = /open (http:\/\/\S+)/.exec(out);
        if (m) resolve(m[1]!);
      });
      server.once('exit', (code) => reject(new Error(`sfc demo exited (${code}): ${stderr}`)));
    });
    browser = await chromium.launch({ executablePath: chromiumPath, args: ['--no-sandbox'] });
  }, 180_000);

  afterAll(async () => {
    await browser?.close();
    if (server && server.exitCode === null) {
      const exited = new Promise((r) => server.once('exit', r));
      server.kill('SIGTERM');
      await exited;
    }
  });

  it('draws frames as they arrive, switches the prompt, stops', async () => {
    const page = await browser.newPage();
    const pageErrors: string[] = [];
    page.on('pageerror', (e) => pageErrors.push(e.message));
    // page-side code as strings: the test project has no DOM types
    const text = (id: string) => `document.getElementById('${id}').textContent`;
    const until = (expr: string) => page.waitForFunction(expr, null, { timeout: 60_000 });
    const count = async (id: string) => Number(await page.textContent(`#${id}`));
    await page.goto(url);
    await until(`${text('status')} === 'ready'`);
    expect(await page.textContent('#server')).toMatch(/^tiny on /);
    expect(await page.isDisabled('#decoder option[value="taehv"]')).toBe(true);
    await page.fill('#prompt', 'a red fox running through snow');
    await page.fill('#fps', '24');
    await page.click('#start');
    await until(`Number(${text('frames-shown')}) > 0`);
    const canvas = (await page.evaluate(`(() => {
      const c = document.getElementById('canvas');
      const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      let opaque = 0;
      for (let i = 3; i < px.length; i += 4) if (px[i] > 0) opaque++;
      return { opaque, total: c.width * c.height, width: c.width, height: c.height };
    })()`)) as { opaque: number; total: number; width: number; height: number };
    expect([canvas.width, canvas.height]).toEqual([96, 64]);
    expect(canvas.opaque).toBe(canvas.total);
    await until(`Number(${text('frames-shown')}) > ${await count('frames-shown')}`);

    await page.fill('#prompt', 'a blue whale in deep water');
    await page.click('#switch');
    await until(`/prompt changed/.test(${text('status')})`);
    await until(`Number(${text('frames-received')}) > ${await count('frames-received')}`);
    await page.click('#stop');
    await until(`/^stopped: \\d+ frames/.test(${text('status')})`);
    expect(await page.getAttribute('#download', 'class')).not.toMatch(/disabled/);
    const dir = join(packageRoot(import.meta.url), 'test', 'artifacts');
    mkdirSync(dir, { recursive: true });
    await page.screenshot({ path: join(dir, 'demo.png'), fullPage: true });
    expect(pageErrors).toEqual([]);
    expect(stderr.replace(/^sfc: no checkpoints given.*\n/m, '')).toBe('');
    await page.close();
  }, 240_000);
});
