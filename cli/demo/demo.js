// The sfc demo page: control messages over the WebSocket as JSON, frames as binary messages (an 8-byte
// header: frame index and chunk index, uint32 little-endian; then the JPEG). Frames are buffered and
// drawn at the target FPS. Plain browser JavaScript, no dependencies.
'use strict';

const HEADER_BYTES = 8;
const $ = (id) => document.getElementById(id);
const ui = {
  server: $('server'),
  prompt: $('prompt'),
  seed: $('seed'),
  fps: $('fps'),
  decoder: $('decoder'),
  precision: $('precision'),
  start: $('start'),
  switch: $('switch'),
  stop: $('stop'),
  download: $('download'),
  status: $('status'),
  error: $('error'),
  canvas: $('canvas'),
  chunk: $('chunk'),
  received: $('frames-received'),
  shown: $('frames-shown'),
  buffered: $('buffered'),
  genFps: $('gen-fps'),
};
const ctx = ui.canvas.getContext('2d');

let ws;
let running = false;
let busy = false;
let received = 0;
let shown = 0;
let playFps = 16;
let queue = []; // decoded frames (ImageBitmap) waiting to be drawn
let pending = Promise.resolve(); // keeps decoding in arrival order
let timer;

function setStatus(text) {
  ui.status.textContent = text;
}
function setError(text) {
  ui.error.textContent = text;
}
function buttons() {
  const open = ws && ws.readyState === WebSocket.OPEN;
  ui.start.disabled = !open || running || busy;
  ui.switch.disabled = !open || !running;
  ui.stop.disabled = !open || !running;
}
function setDownload(available) {
  ui.download.classList.toggle('disabled', !available);
  // a fresh URL so the browser does not reuse the previous video
  if (available) ui.download.href = 'download?t=' + Date.now();
}

function play() {
  clearTimeout(timer);
  const frame = queue.shift();
  if (frame) {
    ctx.drawImage(frame, 0, 0, ui.canvas.width, ui.canvas.height);
    frame.close();
    shown++;
    ui.shown.textContent = String(shown);
    ui.buffered.textContent = String(queue.length);
  }
  if (frame || running) timer = setTimeout(play, 1000 / playFps);
}

function onFrame(buf) {
  if (buf.byteLength <= HEADER_BYTES) return;
  received++;
  ui.received.textContent = String(received);
  const blob = new Blob([new Uint8Array(buf, HEADER_BYTES)], { type: 'image/jpeg' });
  pending = pending
    .then(() => createImageBitmap(blob))
    .then((bitmap) => {
      queue.push(bitmap);
      ui.buffered.textContent = String(queue.length);
      if (timer === undefined || queue.length === 1) play();
    })
    .catch((e) => setError('a frame could not be decoded: ' + e.message));
}

function onMessage(m) {
  switch (m.type) {
    case 'hello':
      ui.server.textContent = `${m.model} on ${m.device}, ${m.width}x${m.height}, window ${m.window.localAttnSize} latent frames (sink ${m.window.sinkSize})`;
      ui.canvas.width = m.width;
      ui.canvas.height = m.height;
      ui.seed.max = String(m.limits.maxSeed);
      ui.fps.min = String(m.limits.minFps);
      ui.fps.max = String(m.limits.maxFps);
      ui.prompt.maxLength = m.limits.maxPromptChars;
      // the server runs one decoder and precision (its --decoder / --precision): offer those
      for (const [select, values] of [
        [ui.decoder, m.decoders],
        [ui.precision, m.precisions],
      ])
        for (const o of select.options) {
          o.disabled = !values.includes(o.value);
          if (values.includes(o.value)) o.selected = true;
        }
      busy = m.busy;
      setStatus(busy ? 'busy: another client is generating' : 'ready');
      setDownload(m.download);
      break;
    case 'started':
      running = true;
      setStatus(`generating (seed ${m.seed}, ${m.fps} fps)`);
      break;
    case 'progress':
      ui.chunk.textContent = String(m.chunk);
      ui.genFps.textContent = m.fps.toFixed(1);
      break;
    case 'prompt':
      setStatus('prompt changed: the next chunk uses it');
      break;
    case 'stopped':
      running = false;
      setStatus(
        `stopped${{ stopped: '', limit: ' at the longest video', error: ' by an error' }[m.reason] ?? ''}: ${m.frames} frames`,
      );
      setDownload(m.download);
      break;
    case 'busy':
      busy = true;
      setStatus('busy: ' + m.message);
      break;
    case 'idle':
      busy = false;
      setStatus('ready');
      break;
    case 'warning':
    case 'error':
      setError(m.message);
      break;
  }
  buttons();
}

function connect() {
  const url = new URL('ws', location.href);
  url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
  ws = new WebSocket(url);
  ws.binaryType = 'arraybuffer';
  ws.onopen = () => buttons();
  ws.onmessage = (e) => {
    if (typeof e.data === 'string') {
      try {
        onMessage(JSON.parse(e.data));
      } catch (err) {
        setError('a bad message from the server: ' + err.message);
      }
    } else onFrame(e.data);
  };
  ws.onclose = () => {
    running = false;
    setStatus('disconnected; reload the page to reconnect');
    buttons();
  };
}

function sendJson(msg) {
  setError('');
  ws.send(JSON.stringify(msg));
}

ui.start.onclick = () => {
  const seed = Number(ui.seed.value);
  playFps = Number(ui.fps.value);
  if (!Number.isInteger(seed) || seed < 0 || seed > Number(ui.seed.max))
    return setError('the seed must be a whole number from 0 to ' + ui.seed.max);
  if (!(playFps >= Number(ui.fps.min) && playFps <= Number(ui.fps.max)))
    return setError(`the FPS must be from ${ui.fps.min} to ${ui.fps.max}`);
  received = 0;
  shown = 0;
  for (const f of queue) f.close();
  queue = [];
  ui.received.textContent = ui.shown.textContent = ui.buffered.textContent = '0';
  sendJson({
    type: 'start',
    prompt: ui.prompt.value,
    seed,
    fps: playFps,
    decoder: ui.decoder.value,
    precision: ui.precision.value,
  });
};
ui.switch.onclick = () => sendJson({ type: 'prompt', prompt: ui.prompt.value });
ui.stop.onclick = () => sendJson({ type: 'stop' });
ui.fps.onchange = () => {
  const v = Number(ui.fps.value);
  if (v >= Number(ui.fps.min) && v <= Number(ui.fps.max)) playFps = v;
};

connect();
