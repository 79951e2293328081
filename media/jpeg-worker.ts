// Worker thread of media/jpeg-pool.ts: encodes RGB frames to JPEG (media/avi.ts encodeJpeg).
import { parentPort } from 'node:worker_threads';
import { encodeJpeg } from './avi.js';

parentPort?.on('message', (m: { id: number; rgb: Uint8Array; width: number; height: number; quality: number }) => {
  try {
    const jpg = encodeJpeg(m.rgb, m.width, m.height, m.quality);
    parentPort!.postMessage({ id: m.id, jpg }, [jpg.buffer as ArrayBuffer]);
  } catch (e) {
    parentPort!.postMessage({ id: m.id, error: (e as Error).message });
  }
});
