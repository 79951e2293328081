// Philox4x32-10 and the sfc random definitions (compiler/rng.ts): Random123 known-answer vectors,
// distribution sanity, the CUDA text compiling with nvcc (sm_80, sm_90a), and bit-exactness of the
// CUDA integer code against TypeScript, checked on the host by compiling RNG_CUDA with g++.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { philox4x32, rand, randn, randomBits, RNG_CUDA, uniformFromBits } from '../../compiler/rng.js';

const has = (tool: string) => spawnSync(tool, ['--version'], { stdio: 'ignore' }).status === 0;
const dir = mkdtempSync(join(tmpdir(), 'sfc-rng-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('philox4x32', () => {
  // Random123 tests/kat_vectors, "philox4x32 10" lines: counter[4], key[2] -> result[4].
  const kat: [number[], number[]][] = [
    [
      [0, 0, 0, 0, 0, 0],
      [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8],
    ],
    [
      [0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff],
      [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd],
    ],
    [
      [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0],
      [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1],
    ],
  ];
  it.each(kat)('matches the Random123 known answer for %j', (input, expected) => {
    const [c0, c1, c2, c3, k0, k1] = input;
    expect(philox4x32(c0, c1, c2, c3, k0, k1)).toEqual(expected);
  });

  it('runs at least 1e6 calls per second', () => {
    let acc = 0;
    for (let i = 0; i < 1e5; i++) acc ^= randomBits(1, i); // warm-up
    const t0 = performance.now();
    for (let i = 0; i < 1e6; i++) acc ^= randomBits(7, i);
    const ms = performance.now() - t0;
    expect(acc).not.toBeNaN();
    expect(ms).toBeLessThan(1000);
  });
});

describe('rand / randn', () => {
  const N = 1e5;

  it('rand is uniform on (0, 1) and float32-exact', () => {
    let sum = 0;
    let bad = 0;
    for (let i = 0; i < N; i++) {
      const x = rand(42, i);
      if (!(x > 0 && x < 1 && Math.fround(x) === x)) bad++;
      sum += x;
    }
    expect(bad).toBe(0);
    expect(Math.abs(sum / N - 0.5)).toBeLessThan(0.005);
    expect(uniformFromBits(0)).toBe(2 ** -24);
    expect(uniformFromBits(0xffffffff)).toBe(1 - 2 ** -24);
  });

  it('randn has mean 0 and variance 1', () => {
    let sum = 0;
    let sumSq = 0;
    for (let i = 0; i < N; i++) {
      const z = randn(7, i);
      sum += z;
      sumSq += z * z;
    }
    const mean = sum / N;
    expect(Math.abs(mean)).toBeLessThan(0.02);
    expect(Math.abs(sumSq / N - mean * mean - 1)).toBeLessThan(0.03);
  });

  it('is a pure function of (seed, offset), and seeds differ', () => {
    expect(rand(3, 11)).toBe(rand(3, 11));
    expect(randn(3, 11)).toBe(randn(3, 11));
    const a = Array.from({ length: 64 }, (_, i) => randomBits(0, i));
    const b = Array.from({ length: 64 }, (_, i) => randomBits(1, i));
    expect(a.filter((x, i) => x === b[i]).length).toBe(0);
    expect(new Set(a).size).toBe(64); // seed 0 is not degenerate
  });
});

describe('RNG_CUDA', () => {
  const probe = `${RNG_CUDA}
extern "C" __global__ void sfc_rng_probe(unsigned* bits, float* f, unsigned seed) {
  unsigned i = blockIdx.x * blockDim.x + threadIdx.x, w[4];
  sfc_philox4x32(i, 1u, 2u, 3u, seed, 5u, w);
  bits[i] = w[0] ^ w[1] ^ w[2] ^ w[3] ^ sfc_random_bits(seed, i);
  f[2 * i] = sfc_rand(seed, i) + sfc_uniform_from_bits(w[0]);
  f[2 * i + 1] = sfc_randn(seed, i);
}
`;
  const nvcc = has('nvcc');
  it.skipIf(!nvcc).each([['-arch=sm_80'], ['-gencode=arch=compute_90a,code=sm_90a']])(
    'compiles with nvcc %s',
    (arch) => {
      const cu = join(dir, 'probe.cu');
      writeFileSync(cu, probe);
      execFileSync('nvcc', ['-cubin', arch, '-o', join(dir, 'probe.cubin'), cu], { stdio: 'pipe' });
    },
  );

  // No GPU here: compile the same text for the host, with __umulhi as an exact 64-bit multiply.
  it.skipIf(!has('g++'))('integer code is bit-identical to TypeScript (host g++ build)', () => {
    const pairs: [number, number][] = [];
    for (let i = 0; i < 100; i++) pairs.push([(i * 0x9e3779b1) >>> 0, (i * 0x85ebca6b + (i << 28)) >>> 0]);
    pairs.push([0, 0], [0xffffffff, 0xffffffff], [0, 0xffffffff], [0xffffffff, 0]);
    const src = `#define __device__
#define __forceinline__
#define __umulhi(a, b) ((unsigned)(((unsigned long long)(a) * (b)) >> 32))
extern "C" int printf(const char*, ...);
extern "C" float sqrtf(float);
extern "C" float logf(float);
extern "C" float cosf(float);
static float cospif(float x) { return cosf(3.14159265358979f * x); }
${RNG_CUDA}
static const unsigned pairs[][2] = {${pairs.map(([s, o]) => `{${s}u, ${o}u}`).join(', ')}};
int main() {
  for (unsigned i = 0; i < sizeof(pairs) / sizeof(pairs[0]); ++i) {
    unsigned s = pairs[i][0], o = pairs[i][1], w[4];
    sfc_philox4x32(o, s, ~o, i, s ^ 0x12345678u, ~s, w);
    printf("%u %u %u %u %u %.9g %.9g\\n", w[0], w[1], w[2], w[3], sfc_random_bits(s, o), sfc_rand(s, o), sfc_randn(s, o));
  }
  return 0;
}
`;
    const cpp = join(dir, 'host.cpp');
    const exe = join(dir, 'host');
    writeFileSync(cpp, src);
    execFileSync('g++', ['-O2', '-o', exe, cpp, '-lm'], { stdio: 'pipe' });
    const lines = execFileSync(exe, { encoding: 'utf8' }).trim().split('\n');
    expect(lines.length).toBe(pairs.length);
    lines.forEach((line, i) => {
      const [s, o] = pairs[i];
      const v = line.split(' ').map(Number);
      expect(v.slice(0, 4)).toEqual(philox4x32(o, s, ~o >>> 0, i, (s ^ 0x12345678) >>> 0, ~s >>> 0));
      expect(v[4]).toBe(randomBits(s, o));
      expect(Math.fround(v[5])).toBe(rand(s, o));
      expect(Math.abs(v[6] - randn(s, o))).toBeLessThan(1e-5);
    });
  });
});
