// The worker-thread JPEG pool gives the same bytes as encoding on the main thread, for many frames at
// once, and refuses work after close. (The workers run dist/media/jpeg-worker.js: `npm run build`.)
import { describe, expect, it } from 'vitest';
import { encodeJpeg } from '../../media/avi.js';
import { JpegPool } from '../../media/jpeg-pool.js';

describe('JpegPool', () => {
  it('encodes frames in parallel to the bytes encodeJpeg gives', async () => {
    const pool = new JpegPool(3);
    try {
      const [w, h] = [40, 24];
      const frames = Array.from({ length: 7 }, (_, k) =>
        Uint8Array.from({ length: w * h * 3 }, (_, i) => (i * 7 + k * 31) % 256),
      );
      const got = await Promise.all(frames.map((f) => pool.encode(f, w, h, 85)));
      got.forEach((jpg, k) =>
        expect(Buffer.from(jpg).equals(Buffer.from(encodeJpeg(frames[k]!, w, h, 85)))).toBe(true),
      );
    } finally {
      await pool.close();
    }
    await expect(pool.encode(new Uint8Array(12), 2, 2)).rejects.toThrow(/the JPEG pool is closed/);
  });
});
