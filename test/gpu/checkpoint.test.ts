// Checkpoint tensors go from disk to the GPU through pinned staging buffers (double-buffered DMA):
// the values on the device equal the file's, for a small fixture and for a 70 MB tensor that needs
// several staging rounds.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bf16 } from '../../dsl/dtypes.js';
import { packageRoot } from '../../dsl/paths.js';
import { SafetensorsFile, writeSafetensors } from '../../runtime/checkpoint/safetensors.js';
import type { CudaDevice } from '../../runtime/cuda.js';
import { noGpuReason, openDevice } from './gpu.js';

describe.skipIf(!!noGpuReason)('checkpoint upload to the GPU', () => {
  let dev: CudaDevice;
  beforeAll(() => {
    dev = openDevice();
  });
  afterAll(() => dev?.dispose());

  it('uploads every fixture tensor exactly', () => {
    const f = SafetensorsFile.open(
      join(packageRoot(import.meta.url), 'test', 'fixtures', 'checkpoints', 'state_dict_tiny.safetensors'),
    );
    for (const name of f.names()) {
      const t = f.toTensor(name, dev);
      const back = t.toRaw();
      expect(new Uint8Array(back.buffer, back.byteOffset, back.byteLength), name).toEqual(f.readBytes(name));
      t.dispose();
    }
    f.close();
  });

  it('streams a tensor larger than the staging buffers', () => {
    const n = 35_000_001; // 70 MB of bf16: five 16 MiB staging rounds, an odd tail
    const data = new Uint8Array(n * 2);
    for (let i = 0; i < data.length; i++) data[i] = (i * 2654435761) >>> 24;
    const path = join(mkdtempSync(join(tmpdir(), 'sfc-upload-')), 'big.safetensors');
    writeSafetensors(path, [{ name: 'w', dtype: bf16, shape: [n], data }]);
    const f = SafetensorsFile.open(path);
    const t = f.toTensor('w', dev);
    const back = t.toRaw();
    expect(Buffer.compare(Buffer.from(back.buffer, back.byteOffset, back.byteLength), Buffer.from(data))).toBe(0);
    t.dispose();
    f.close();
  });
});
