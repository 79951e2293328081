// Measures `sfc demo` from a client's side: connects to a running demo's WebSocket, starts a
// generation, counts the JPEG frames that arrive for `seconds`, stops, and prints one JSON line
// (frames received, frames/s after the first frame, first-frame latency, the server's own status).
//   node dist/bench/e2e/demo-client.js ws://127.0.0.1:PORT/ws [seconds] [prompt]
import WebSocket from 'ws';

const [url = 'ws://127.0.0.1:7860/ws', secs = '20', prompt = 'a red fox running through fresh snow at dawn'] =
  process.argv.slice(2);
const ws = new WebSocket(url);
let frames = 0;
let t0 = 0;
let first = 0;
let last: unknown;
ws.on('open', () => {
  t0 = performance.now();
  ws.send(JSON.stringify({ type: 'start', prompt, seed: 0, fps: 16 }));
  setTimeout(() => ws.send(JSON.stringify({ type: 'stop' })), Number(secs) * 1000);
});
ws.on('message', (data, isBinary) => {
  if (isBinary) {
    if (!frames) first = performance.now();
    frames++;
    return;
  }
  const m = JSON.parse(String(data)) as { type: string };
  if (m.type === 'progress' || m.type === 'stopped' || m.type === 'error') last = m;
  if (m.type === 'stopped' || m.type === 'error') {
    const end = performance.now();
    console.log(
      JSON.stringify({
        frames,
        firstFrameMs: first - t0,
        fps: frames > 1 ? ((frames - 1) * 1000) / (end - first) : 0,
        last,
      }),
    );
    ws.close();
  }
});
ws.on('error', (e) => {
  console.error(`demo client: ${e.message}`);
  process.exit(1);
});
