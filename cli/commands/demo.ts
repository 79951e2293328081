// `sfc demo`: real-time generation streamed to a browser. One HTTP server serves the page (cli/demo/)
// and a WebSocket at /ws: JSON text messages for control and status, each video frame as one binary
// message (an 8-byte header, then the JPEG). The models are loaded once at start; one generation runs
// at a time (other clients are told "busy"), chunk by chunk on the rolling KV cache until the client
// stops it, changes nothing but the prompt when asked (the cache keeps the scene), and ends when its
// client disconnects. The frames of the last finished generation are kept as a Motion-JPEG AVI
// served at /download.
import { mkdtempSync, readFileSync, rmSync, statSync, createReadStream } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { extname, join } from 'node:path';
import type { Command } from 'commander';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import { SfcError } from '../../dsl/errors.js';
import { packageRoot } from '../../dsl/paths.js';
import { MjpegAviWriter } from '../../media/avi.js';
import { JpegPool } from '../../media/jpeg-pool.js';
import { CausalPipeline, chunkPlan, type ChunkOut } from '../../models/pipeline/causal.js';
import type { TextContext } from '../../models/wan/model.js';
import type { Io } from '../main.js';
import { int, loadModels, modelOptions, resolveSetup, type ModelFlags, type Models, type Setup } from './infer.js';

export interface DemoOptions extends ModelFlags {
  host: string;
  port: string;
}

/** Limits on what a client may ask for. */
export const DEMO_LIMITS = {
  maxPromptChars: 2000,
  maxSeed: 2 ** 31 - 1,
  minFps: 1,
  maxFps: 60,
  /** bytes of one WebSocket message from a client (control messages are small) */
  maxMessageBytes: 64 * 1024,
  /** frames waiting in a client's socket before generation waits for it */
  maxBufferedBytes: 8 * 2 ** 20,
};

/** Wan's RoPE tables cover 1024 latent frames: a demo generation ends there at the latest. */
const ROPE_FRAMES = 1024;
/** The demo's rolling cache when the config sets no window: 12 latent frames, 1 of them a sink. */
const DEMO_WINDOW = 12;
const DEMO_SINK = 1;
/** Bytes before each frame's JPEG: frame index, chunk index (uint32, little-endian). */
export const FRAME_HEADER_BYTES = 8;

export interface DemoServer {
  url: string;
  port: number;
  /** resolves when no generation runs (the current one has seen its cancellation) */
  idle: () => Promise<void>;
  close: () => Promise<void>;
}

interface StartRequest {
  prompt: string;
  seed: number;
  fps: number;
}

interface Session {
  ws: WebSocket;
  prompt: string;
  /** a prompt asked for while a chunk was being made; used from the next chunk on */
  nextPrompt?: string;
  cancelled: boolean;
  frames: number;
}

class ClientError extends Error {}

const STATIC: Record<string, string> = {
  '/': 'index.html',
  '/index.html': 'index.html',
  '/demo.js': 'demo.js',
  '/demo.css': 'demo.css',
};
const MIME: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
};

/** Parses and validates one control message (throws ClientError with a message for the client). */
export function parseMessage(
  data: RawData,
  isBinary: boolean,
  defaults: { seed: number; fps: number; decoder?: string; precision?: string },
) {
  if (isBinary) throw new ClientError('messages to the server are JSON text, not binary');
  let msg: unknown;
  try {
    msg = JSON.parse(data.toString());
  } catch {
    throw new ClientError('the message is not valid JSON');
  }
  if (typeof msg !== 'object' || msg === null || Array.isArray(msg))
    throw new ClientError('a message is a JSON object with a "type"');
  const m = msg as Record<string, unknown>;
  const prompt = (): string => {
    if (typeof m.prompt !== 'string') throw new ClientError('"prompt" must be a string');
    const p = m.prompt.trim();
    if (!p) throw new ClientError('the prompt is empty');
    if (p.length > DEMO_LIMITS.maxPromptChars)
      throw new ClientError(`the prompt is ${p.length} characters; the limit is ${DEMO_LIMITS.maxPromptChars}`);
    return p;
  };
  switch (m.type) {
    case 'start': {
      const seed = m.seed ?? defaults.seed;
      if (typeof seed !== 'number' || !Number.isInteger(seed) || seed < 0 || seed > DEMO_LIMITS.maxSeed)
        throw new ClientError(`"seed" must be a whole number from 0 to ${DEMO_LIMITS.maxSeed}`);
      const fps = m.fps ?? defaults.fps;
      if (typeof fps !== 'number' || !Number.isFinite(fps) || fps < DEMO_LIMITS.minFps || fps > DEMO_LIMITS.maxFps)
        throw new ClientError(`"fps" must be a number from ${DEMO_LIMITS.minFps} to ${DEMO_LIMITS.maxFps}`);
      // the server runs what it was started with (--decoder, --precision): the models are loaded once
      const decoder = defaults.decoder ?? 'wan';
      const precision = defaults.precision ?? 'bf16';
      if (m.decoder !== undefined && m.decoder !== decoder)
        throw new ClientError(
          `decoder '${String(m.decoder)}' is not available; this server runs '${decoder}' (start it with --decoder)`,
        );
      if (m.precision !== undefined && m.precision !== precision)
        throw new ClientError(
          `precision '${String(m.precision)}' is not available; this server runs '${precision}' (start it with --precision)`,
        );
      return { type: 'start' as const, prompt: prompt(), seed, fps };
    }
    case 'prompt':
      return { type: 'prompt' as const, prompt: prompt() };
    case 'stop':
      return { type: 'stop' as const };
    default:
      throw new ClientError(
        typeof m.type === 'string'
          ? `unknown message type '${m.type.slice(0, 40)}' (start, prompt, stop)`
          : 'a message needs a "type" (start, prompt, stop)',
      );
  }
}

/** The latent frames of a demo generation: the most whole chunks the RoPE tables allow. */
function demoFrames(s: Setup): number {
  const per = s.config.num_frame_per_block;
  const first = s.config.independent_first_frame ? 1 : 0;
  const n = first + Math.floor((ROPE_FRAMES - first) / per) * per;
  chunkPlan(n, per, s.config.independent_first_frame); // throws if the config's chunks cannot split it
  return n;
}

export async function startDemo(o: DemoOptions, io: Io): Promise<DemoServer> {
  const host = o.host;
  const port = int(o.port, '--port') ?? 7860;
  if (port > 65535) throw new SfcError(`--port takes 0 to 65535, got '${o.port}'`, { exitCode: 2 });
  const setup = resolveSetup(o);
  const { config, preset, height, width } = setup;
  const windowed = config.model_kwargs.local_attn_size !== -1;
  const numFrames = demoFrames(setup);
  // prompts change while the demo runs: keep UMT5 resident on a GPU (a switch then costs one encode, not a load)
  const models: Models = loadModels(o, setup, io, { keepTextEncoder: o.device !== 'cpu' });
  const base = models.pipelineOptions(numFrames, config.seed);
  const options = {
    ...base,
    localAttnSize: windowed ? base.localAttnSize : DEMO_WINDOW,
    sinkSize: windowed ? base.sinkSize : DEMO_SINK,
  };
  const cache = new CausalPipeline(models.model, models.kernels, options).newCache();
  const jpegs = new JpegPool(); // a chunk's frames are JPEG-encoded in parallel, off the main thread
  const workDir = mkdtempSync(join(tmpdir(), 'sfc-demo-'));
  const staticDir = join(packageRoot(import.meta.url), 'cli', 'demo');
  const defaults = { seed: config.seed, fps: 16, decoder: o.decoder ?? 'wan', precision: o.precision ?? 'bf16' };
  let active: Session | undefined;
  let running: Promise<void> = Promise.resolve();
  let lastVideo: { path: string; frames: number } | undefined;
  let videoCount = 0;
  const clients = new Set<WebSocket>();

  const send = (ws: WebSocket, msg: object) => {
    if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(msg));
  };
  const broadcast = (msg: object, except?: WebSocket) => clients.forEach((c) => c !== except && send(c, msg));
  const hello = () => ({
    type: 'hello',
    model: preset.name,
    device: models.device.name,
    width,
    height,
    decoders: [defaults.decoder],
    precisions: [defaults.precision],
    limits: DEMO_LIMITS,
    defaults,
    window: { localAttnSize: options.localAttnSize, sinkSize: options.sinkSize },
    busy: active !== undefined,
    download: lastVideo !== undefined,
  });
  const encode = (prompt: string): TextContext => {
    const [context] = models.promptEncoder.encode([prompt]);
    try {
      return models.model.encodeContext(context!);
    } finally {
      context!.dispose();
    }
  };
  const waitForClient = async (s: Session) => {
    while (!s.cancelled && s.ws.bufferedAmount > DEMO_LIMITS.maxBufferedBytes)
      await new Promise((r) => setTimeout(r, 10));
  };

  async function generate(s: Session, req: StartRequest): Promise<void> {
    const pipeline = new CausalPipeline(models.model, models.kernels, { ...options, seed: req.seed });
    const target = join(workDir, `video-${++videoCount}.avi`);
    let writer: MjpegAviWriter | undefined = new MjpegAviWriter(target, { width, height, fps: req.fps });
    let text = encode(s.prompt);
    const stream = models.vae.stream();
    const gen = pipeline.generate(() => text, cache);
    const t0 = performance.now();
    let reason = 'stopped';
    send(s.ws, { type: 'started', prompt: s.prompt, seed: req.seed, fps: req.fps, width, height, numFrames });
    broadcast({ type: 'busy', message: 'another client is generating' }, s.ws);
    try {
      for (;;) {
        await new Promise((r) => setImmediate(r)); // let stop/prompt messages and disconnects in
        if (s.cancelled) break;
        if (s.nextPrompt !== undefined) {
          const next = encode(s.nextPrompt);
          text.dispose();
          text = next;
          s.prompt = s.nextPrompt;
          s.nextPrompt = undefined;
        }
        const r: IteratorResult<ChunkOut> = gen.next();
        if (r.done) {
          reason = 'limit';
          break;
        }
        const c = r.value;
        const v = stream.decode(c.latents);
        c.latents.dispose();
        const frames = models.vae.toRgb(v);
        v.dispose();
        const encoded = await Promise.all(frames.map((f) => jpegs.encode(f, width, height)));
        for (const jpg of encoded) {
          const msg = Buffer.alloc(FRAME_HEADER_BYTES + jpg.length);
          msg.writeUInt32LE(s.frames, 0);
          msg.writeUInt32LE(c.index, 4);
          msg.set(jpg, FRAME_HEADER_BYTES);
          if (s.ws.readyState === s.ws.OPEN) s.ws.send(msg, { binary: true });
          s.frames++;
          if (writer) {
            try {
              await writer.appendJpeg(jpg);
            } catch (e) {
              writer = undefined; // the AVI is full (1 GiB): streaming goes on, the download ends here
              send(s.ws, { type: 'warning', message: `the download stops here: ${(e as Error).message}` });
            }
          }
        }
        const secs = (performance.now() - t0) / 1000;
        send(s.ws, {
          type: 'progress',
          chunk: c.index,
          latentFrames: c.startFrame + c.latents.shape[1]!,
          frames: s.frames,
          fps: s.frames / secs,
          chunkMs: c.ms,
          prompt: s.prompt,
        });
        await waitForClient(s);
      }
    } catch (e) {
      reason = 'error';
      io.stderr(`sfc demo: generation failed: ${(e as Error).message}\n`);
      send(s.ws, { type: 'error', message: `generation failed: ${(e as Error).message}` });
    } finally {
      gen.return(undefined);
      stream.dispose();
      text.dispose();
      if (writer && writer.frames > 0) {
        try {
          await writer.close();
          if (lastVideo) rmSync(lastVideo.path, { force: true });
          lastVideo = { path: target, frames: writer.frames };
        } catch (e) {
          io.stderr(`sfc demo: the download could not be written: ${(e as Error).message}\n`);
        }
      } else await writer?.abort();
      active = undefined;
      send(s.ws, { type: 'stopped', reason, frames: s.frames, download: lastVideo !== undefined });
      broadcast({ type: 'idle', download: lastVideo !== undefined }, s.ws);
    }
  }

  const onMessage = (ws: WebSocket, data: RawData, isBinary: boolean) => {
    let m: ReturnType<typeof parseMessage>;
    try {
      m = parseMessage(data, isBinary, defaults);
    } catch (e) {
      if (!(e instanceof ClientError)) throw e;
      send(ws, { type: 'error', message: e.message });
      return;
    }
    const mine = active?.ws === ws ? active : undefined;
    if (m.type === 'start') {
      if (mine) return send(ws, { type: 'error', message: 'a generation is already running; stop it first' });
      if (active) return send(ws, { type: 'busy', message: 'another client is generating; try again when it stops' });
      const s: Session = { ws, prompt: m.prompt, cancelled: false, frames: 0 };
      active = s;
      running = generate(s, m);
    } else if (m.type === 'prompt') {
      if (!mine) return send(ws, { type: 'error', message: 'nothing is running; start first' });
      mine.nextPrompt = m.prompt;
      send(ws, { type: 'prompt', prompt: m.prompt });
    } else {
      if (!mine) return send(ws, { type: 'error', message: 'nothing is running' });
      mine.cancelled = true;
    }
  };

  const serveFile = (req: IncomingMessage, res: ServerResponse, path: string, type: string, name?: string) => {
    res.writeHead(200, {
      'content-type': type,
      'content-length': statSync(path).size,
      'cache-control': 'no-store',
      ...(name ? { 'content-disposition': `attachment; filename="${name}"` } : {}),
    });
    if (req.method === 'HEAD') return void res.end();
    createReadStream(path).pipe(res);
  };
  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    const plain = (code: number, text: string) => {
      res.writeHead(code, { 'content-type': 'text/plain; charset=utf-8' });
      res.end(`${text}\n`);
    };
    try {
      const path = new URL(req.url ?? '/', 'http://localhost').pathname;
      if (req.method !== 'GET' && req.method !== 'HEAD') return plain(405, 'only GET');
      if (path === '/download') {
        if (!lastVideo)
          return plain(404, active ? 'the first generation is still running; stop it first' : 'nothing generated yet');
        return serveFile(req, res, lastVideo.path, 'video/x-msvideo', 'sfc-demo.avi');
      }
      const file = STATIC[path];
      if (!file) return plain(404, 'not found');
      const full = join(staticDir, file);
      res.writeHead(200, { 'content-type': MIME[extname(file)]!, 'cache-control': 'no-store' });
      res.end(req.method === 'HEAD' ? undefined : readFileSync(full));
    } catch (e) {
      io.stderr(`sfc demo: ${req.method} ${req.url}: ${(e as Error).message}\n`);
      if (!res.headersSent) plain(500, 'internal error');
      else res.destroy();
    }
  };

  const server: Server = createServer(onRequest);
  const wss = new WebSocketServer({ server, path: '/ws', maxPayload: DEMO_LIMITS.maxMessageBytes });
  wss.on('connection', (ws) => {
    clients.add(ws);
    send(ws, hello());
    ws.on('message', (data, isBinary) => {
      try {
        onMessage(ws, data, isBinary);
      } catch (e) {
        io.stderr(`sfc demo: ${(e as Error).message}\n`);
        send(ws, { type: 'error', message: `internal error: ${(e as Error).message}` });
      }
    });
    ws.on('close', () => {
      clients.delete(ws);
      if (active?.ws === ws) active.cancelled = true;
    });
    ws.on('error', (e) => io.stderr(`sfc demo: a client connection failed: ${e.message}\n`));
  });
  const dispose = () => {
    void jpegs.close();
    cache.dispose();
    models.dispose();
    rmSync(workDir, { recursive: true, force: true });
  };
  try {
    await new Promise<void>((resolveListen, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolveListen());
    });
  } catch (e) {
    dispose();
    const err = e as NodeJS.ErrnoException;
    throw new SfcError(`cannot listen on ${host}:${port}: ${err.code ?? err.message}`, {
      hint: err.code === 'EADDRINUSE' ? 'another program uses the port; pass --port 0 for a free one' : undefined,
    });
  }
  const addr = server.address();
  const actual = typeof addr === 'object' && addr ? addr.port : port;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${actual}/`;
  return {
    url,
    port: actual,
    idle: () => running,
    close: async () => {
      if (active) active.cancelled = true;
      await running;
      for (const c of clients) c.terminate();
      await new Promise<void>((r) => wss.close(() => r()));
      await new Promise<void>((r) => server.close(() => r()));
      dispose();
    },
  };
}

export function registerDemo(program: Command, io: Io): void {
  const cmd = program
    .command('demo')
    .description('serve a page that streams generated video to the browser as it is made')
    .option('--host <addr>', 'address to listen on', '127.0.0.1')
    .option('--port <n>', 'port (0: a free one)', '7860');
  modelOptions(cmd)
    .option('--height <px>', 'video height (multiple of 16)')
    .option('--width <px>', 'video width (multiple of 16)')
    .option('--device <d>', 'cpu, cuda or cuda:N (default: cuda when present)')
    .action(async (opts: DemoOptions) => {
      const demo = await startDemo(opts, io);
      io.stdout(`sfc demo: open ${demo.url} (Ctrl-C stops the server)\n`);
      await new Promise<void>((resolveStop) => {
        const stop = () => {
          process.off('SIGINT', stop);
          process.off('SIGTERM', stop);
          void demo.close().then(resolveStop);
        };
        process.on('SIGINT', stop);
        process.on('SIGTERM', stop);
      });
    });
}
