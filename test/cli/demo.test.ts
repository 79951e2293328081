// `sfc demo` server in-process on the CPU with the tiny model (seeded random weights): frames stream as
// binary JPEG messages, the prompt switches mid-stream, bad messages get errors and leave the
// connection usable, a second client is told "busy", a disconnect cancels the generation, and
// /download serves the frames generated as an AVI.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import jpeg from 'jpeg-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { FRAME_HEADER_BYTES, parseMessage, startDemo, type DemoServer } from '../../cli/commands/demo.js';
import { parseAvi } from '../../media/avi.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Msg = Record<string, any>;

/** A WebSocket client that records what it receives and waits for messages. */
class Client {
  readonly texts: Msg[] = [];
  readonly frames: Buffer[] = [];
  private seen = 0;
  closed = false;

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data: Buffer, isBinary) => {
      if (isBinary) this.frames.push(data);
      else this.texts.push(JSON.parse(data.toString()) as Msg);
    });
    ws.on('close', () => (this.closed = true));
  }

  static open(url: string): Promise<Client> {
    const ws = new WebSocket(url);
    const c = new Client(ws);
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve(c));
      ws.once('error', reject);
    });
  }

  send(msg: object | string): void {
    this.ws.send(typeof msg === 'string' ? msg : JSON.stringify(msg));
  }

  /** The next text message (after those already taken) that `pred` accepts. */
  async next(pred: (m: Msg) => boolean, timeoutMs = 60_000): Promise<Msg> {
    const t0 = Date.now();
    for (;;) {
      const i = this.texts.findIndex((m, k) => k >= this.seen && pred(m));
      if (i >= 0) {
        this.seen = i + 1;
        return this.texts[i]!;
      }
      if (Date.now() - t0 > timeoutMs)
        throw new Error(`no such message in ${timeoutMs} ms; got ${JSON.stringify(this.texts.slice(this.seen))}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  type(t: string): Promise<Msg> {
    return this.next((m) => m.type === t);
  }

  async framesAtLeast(n: number, timeoutMs = 60_000): Promise<void> {
    const t0 = Date.now();
    while (this.frames.length < n) {
      if (Date.now() - t0 > timeoutMs) throw new Error(`only ${this.frames.length} of ${n} frames arrived`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

describe('sfc demo server', () => {
  let demo: DemoServer;
  let wsUrl: string;
  const errors: string[] = [];

  beforeAll(async () => {
    process.env.SFC_CACHE_DIR = join(mkdtempSync(join(tmpdir(), 'sfc-demo-test-')), 'cache');
    demo = await startDemo(
      { host: '127.0.0.1', port: '0', model: 'tiny', device: 'cpu', set: [] },
      {
        stdout: () => {},
        stderr: (s) => void errors.push(s),
      },
    );
    wsUrl = `${demo.url.replace(/^http/, 'ws')}ws`;
  }, 180_000);

  afterAll(async () => {
    await demo?.close();
  });

  it('serves the page and 404s the rest', async () => {
    expect(demo.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
    const page = await fetch(demo.url);
    expect(page.headers.get('content-type')).toMatch(/text\/html/);
    expect(await page.text()).toMatch(/<canvas id="canvas"/);
    expect((await fetch(new URL('demo.js', demo.url))).status).toBe(200);
    expect((await fetch(new URL('nope', demo.url))).status).toBe(404);
    expect((await fetch(new URL('download', demo.url))).status).toBe(404);
  });

  it('answers bad messages with errors and stays usable', async () => {
    const c = await Client.open(wsUrl);
    const hello = await c.type('hello');
    expect(hello).toMatchObject({ model: 'tiny', width: 96, height: 64, busy: false, decoders: ['wan'] });
    const err = async (msg: object | string | Buffer, re: RegExp) => {
      if (Buffer.isBuffer(msg)) c.ws.send(msg, { binary: true });
      else c.send(msg);
      expect((await c.type('error')).message).toMatch(re);
    };
    await err('not json {', /not valid JSON/);
    await err('[1, 2]', /JSON object with a "type"/);
    await err({ prompt: 'x' }, /needs a "type"/);
    await err({ type: 'dance' }, /unknown message type 'dance'/);
    await err(Buffer.from([1, 2, 3]), /JSON text, not binary/);
    await err({ type: 'start', prompt: 'x'.repeat(2001) }, /2001 characters; the limit is 2000/);
    await err({ type: 'start', prompt: '   ' }, /the prompt is empty/);
    await err({ type: 'start', prompt: 42 }, /"prompt" must be a string/);
    for (const seed of [-1, 1.5, 2 ** 31, '7'])
      await err({ type: 'start', prompt: 'p', seed }, /"seed" must be a whole number from 0 to 2147483647/);
    await err({ type: 'start', prompt: 'p', fps: 0 }, /"fps" must be a number from 1 to 60/);
    await err({ type: 'start', prompt: 'p', decoder: 'taehv' }, /decoder 'taehv' is not available/);
    await err({ type: 'start', prompt: 'p', precision: 'fp8' }, /precision 'fp8' is not available/);
    await err({ type: 'prompt', prompt: 'p' }, /nothing is running/);
    await err({ type: 'stop' }, /nothing is running/);
    expect(c.frames).toHaveLength(0);
    expect(c.closed).toBe(false);
    c.ws.close();
  });

  it('streams JPEG frames, switches the prompt mid-stream, tells a second client it is busy', async () => {
    const a = await Client.open(wsUrl);
    await a.type('hello');
    a.send({ type: 'start', prompt: 'a red fox running through snow', seed: 3, fps: 12 });
    expect(await a.type('started')).toMatchObject({ seed: 3, fps: 12, width: 96, height: 64 });
    const p0 = await a.type('progress');
    expect(p0).toMatchObject({ chunk: 0, prompt: 'a red fox running through snow' });
    expect(p0.frames).toBeGreaterThan(0);
    await a.framesAtLeast(p0.frames);
    const first = a.frames[0]!;
    expect([first.readUInt32LE(0), first.readUInt32LE(4)]).toEqual([0, 0]);
    const img = jpeg.decode(first.subarray(FRAME_HEADER_BYTES));
    expect([img.width, img.height]).toEqual([96, 64]);

    const b = await Client.open(wsUrl);
    expect((await b.type('hello')).busy).toBe(true);
    b.send({ type: 'start', prompt: 'mine now' });
    expect((await b.type('busy')).message).toMatch(/another client is generating/);
    a.send({ type: 'start', prompt: 'again' });
    expect((await a.type('error')).message).toMatch(/already running; stop it first/);

    a.send({ type: 'prompt', prompt: 'a blue whale in deep water' });
    expect((await a.type('prompt')).prompt).toBe('a blue whale in deep water');
    const switched = await a.next((m) => m.type === 'progress' && m.prompt === 'a blue whale in deep water');
    expect(switched.chunk).toBeGreaterThan(0);
    a.send({ type: 'stop' });
    const stopped = await a.type('stopped');
    expect(stopped).toMatchObject({ reason: 'stopped', download: true });
    await a.framesAtLeast(stopped.frames);
    expect(a.frames.length).toBe(stopped.frames);
    expect(a.frames.map((f) => f.readUInt32LE(0))).toEqual([...Array(stopped.frames).keys()]);
    expect(await b.type('idle')).toMatchObject({ download: true });

    const res = await fetch(new URL('download', demo.url));
    expect(res.headers.get('content-type')).toBe('video/x-msvideo');
    const avi = parseAvi(new Uint8Array(await res.arrayBuffer()));
    expect([avi.width, avi.height, avi.fps, avi.frames.length]).toEqual([96, 64, 12, stopped.frames]);
    expect(Buffer.from(avi.frames[0]!)).toEqual(first.subarray(FRAME_HEADER_BYTES));
    a.ws.close();
    b.ws.close();
  }, 120_000);

  it('a client that disconnects mid-stream cancels its generation', async () => {
    const a = await Client.open(wsUrl);
    await a.type('hello');
    a.send({ type: 'start', prompt: 'waves on a beach' });
    await a.framesAtLeast(1);
    a.ws.terminate();
    await demo.idle();
    const b = await Client.open(wsUrl);
    expect((await b.type('hello')).busy).toBe(false);
    b.send({ type: 'start', prompt: 'a quiet forest', seed: 0 });
    await b.type('started');
    await b.framesAtLeast(1);
    b.send({ type: 'stop' });
    expect((await b.type('stopped')).reason).toBe('stopped');
    b.ws.close();
    expect(errors.filter((e) => !/random weights/.test(e))).toEqual([]);
  }, 120_000);
});

describe('sfc demo control messages', () => {
  const msg = (m: object) => Buffer.from(JSON.stringify(m));
  it('accept the decoder and precision the server runs, and name the flag for the others', () => {
    const taehv = { seed: 0, fps: 16, decoder: 'taehv', precision: 'fp8' };
    expect(parseMessage(msg({ type: 'start', prompt: 'p', decoder: 'taehv', precision: 'fp8' }), false, taehv)).toEqual(
      {
        type: 'start',
        prompt: 'p',
        seed: 0,
        fps: 16,
      },
    );
    expect(() => parseMessage(msg({ type: 'start', prompt: 'p', decoder: 'wan' }), false, taehv)).toThrow(
      /decoder 'wan' is not available; this server runs 'taehv' \(start it with --decoder\)/,
    );
    expect(() => parseMessage(msg({ type: 'start', prompt: 'p', precision: 'bf16' }), false, taehv)).toThrow(
      /this server runs 'fp8' \(start it with --precision\)/,
    );
  });
});
