// Offline nvcc driver: compiles a generated CUDA C++ kernel to a cubin for one architecture and reads the
// ptxas resource report (registers, shared memory, stack, spills). Build machines and CI have nvcc but no
// GPU, so this is how every generated kernel is checked to compile, and to not spill, on every target arch.
// Tools are found through env vars and PATH only; nvcc runs without a shell in a private temp dir.

import { execFile, spawnSync } from 'node:child_process';
import { accessSync, constants, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { SfcError } from '../dsl/errors.js';

export type Arch = 'sm_80' | 'sm_89' | 'sm_90a';
export const BUILD_ARCHS: readonly Arch[] = ['sm_80', 'sm_89', 'sm_90a'];

export interface KernelReport {
  name: string;
  arch: string;
  registers: number;
  sharedBytes: number;
  stackBytes: number;
  spillStoreBytes: number;
  spillLoadBytes: number;
  /** Sum of the `cmem[N]` banks on the Used line; nvcc 13 omits them for sm_90a. */
  constantBytes?: number;
}

const NOT_FOUND_HINT = 'set SFC_NVCC or CUDA_HOME, or put nvcc on PATH';
const EXE = process.platform === 'win32' ? '.exe' : '';

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/** `$SFC_NVCC`, then `$CUDA_HOME/bin/nvcc`, `$CUDA_PATH/bin/nvcc`, then the first nvcc on PATH. */
export function findNvcc(): string | undefined {
  const env = process.env;
  const candidates = [
    env.SFC_NVCC,
    env.CUDA_HOME && join(env.CUDA_HOME, 'bin', `nvcc${EXE}`),
    env.CUDA_PATH && join(env.CUDA_PATH, 'bin', `nvcc${EXE}`),
    ...(env.PATH ?? '')
      .split(delimiter)
      .filter((dir) => dir !== '')
      .map((dir) => join(dir, `nvcc${EXE}`)),
  ];
  return candidates.find((c): c is string => !!c && isExecutable(c));
}

const versions = new Map<string, string>();

/** The release of an nvcc binary, e.g. '13.0' (from "Cuda compilation tools, release 13.0, V13.0.88"). */
export function nvccVersion(nvcc: string): string {
  let version = versions.get(nvcc);
  if (version === undefined) {
    const r = spawnSync(nvcc, ['--version'], { encoding: 'utf8' });
    const m = /release (\d+\.\d+)/.exec(`${r.stdout ?? ''}${r.stderr ?? ''}`);
    if (!m) throw new SfcError(`cannot tell the version of nvcc at ${nvcc}`, { hint: NOT_FOUND_HINT });
    version = m[1];
    versions.set(nvcc, version);
  }
  return version;
}

/** One explicit target: `-arch=` shorthands expand to several, and a plain sm_90 pass would reject wgmma. */
export function gencodeFlags(arch: Arch): string[] {
  return [`-gencode=arch=${arch.replace('sm_', 'compute_')},code=${arch}`];
}

const NO_PROPS = { stackBytes: 0, spillStoreBytes: 0, spillLoadBytes: 0 };

const num = (line: string, re: RegExp): number | undefined => {
  const m = re.exec(line);
  return m ? Number(m[1]) : undefined;
};

/**
 * Parses `-Xptxas -v` output into one report per entry function (kernel), in order of appearance.
 * Fields are matched one by one, so their order within a line (and whether `used N barriers`, smem or cmem
 * appear at all) does not matter; a `Function properties` block is matched to its kernel by name, so it
 * may come before or after the `Used` line. Properties of non-entry device functions are ignored.
 */
export function parsePtxasReport(log: string, arch: string): KernelReport[] {
  const kernels: KernelReport[] = [];
  const props = new Map<string, typeof NO_PROPS>();
  let current: KernelReport | undefined;
  let currentArch = arch;
  let propsFor: string | undefined;
  for (const line of log.split(/\r?\n/)) {
    let m: RegExpExecArray | null;
    if ((m = /Compiling entry function '([^']+)' for '([^']+)'/.exec(line))) {
      currentArch = m[2];
      current = { name: m[1], arch: currentArch, registers: 0, sharedBytes: 0, ...NO_PROPS };
      kernels.push(current);
      propsFor = undefined;
    } else if ((m = /Function properties for (\S+)/.exec(line))) {
      propsFor = `${currentArch}\0${m[1]}`;
    } else if (/^\s*\d+ bytes stack frame/.test(line) && propsFor !== undefined) {
      props.set(propsFor, {
        stackBytes: num(line, /(\d+) bytes stack frame/) ?? 0,
        spillStoreBytes: num(line, /(\d+) bytes spill stores/) ?? 0,
        spillLoadBytes: num(line, /(\d+) bytes spill loads/) ?? 0,
      });
      propsFor = undefined;
    } else if (current && /ptxas info\s*: Used \d+ registers/.test(line)) {
      current.registers = num(line, /Used (\d+) registers/) ?? 0;
      const smem = /(\d+)(?:\+(\d+))? bytes smem/.exec(line);
      current.sharedBytes = smem ? Number(smem[1]) + Number(smem[2] ?? 0) : 0;
      const cmem = [...line.matchAll(/(\d+) bytes cmem\[\d+\]/g)];
      if (cmem.length > 0) current.constantBytes = cmem.reduce((sum, c) => sum + Number(c[1]), 0);
    }
  }
  for (const k of kernels) Object.assign(k, props.get(`${k.arch}\0${k.name}`));
  return kernels;
}

export interface CompileResult {
  cubin: Uint8Array;
  reports: KernelReport[];
  log: string;
  toolchain: string;
}

interface CompileOptions {
  source: string;
  arch: Arch;
  options?: string[];
  name?: string;
  nvcc?: string;
}

interface Job {
  nvcc: string;
  args: string[];
  dir: string;
  input: string;
  output: string;
  name: string;
  toolchain: string;
  env: NodeJS.ProcessEnv;
}

function prepare(opts: CompileOptions): Job {
  const nvcc = opts.nvcc ?? findNvcc();
  if (nvcc === undefined) throw new SfcError('nvcc not found', { hint: NOT_FOUND_HINT });
  const name = opts.name ?? 'kernel.cu';
  const toolchain = `nvcc-${nvccVersion(nvcc)}`;
  const dir = mkdtempSync(join(tmpdir(), 'sfc-nvcc-'));
  const input = join(dir, 'in.cu');
  const output = join(dir, 'out.cubin');
  writeFileSync(input, opts.source);
  const flags = ['-cubin', '-std=c++17', '-O3', '-Xptxas', '-v', ...gencodeFlags(opts.arch), ...(opts.options ?? [])];
  // TMPDIR keeps nvcc's intermediates (tmpxft_*.ptx, named in ptxas errors) in our dir, removed below.
  const env = { ...process.env, TMPDIR: dir, TMP: dir, TEMP: dir };
  return { nvcc, args: [...flags, '-o', output, input], dir, input, output, name, toolchain, env };
}

function finish(job: Job, arch: Arch, status: number | null, stdout: string, stderr: string): CompileResult {
  const log = `${stdout}${stderr}`
    .split(job.input)
    .join(job.name)
    .replace(/\S*tmpxft_[\w-]+\.ptx/g, `${job.name}.ptx`)
    .split(job.dir)
    .join('.');
  if (status !== 0) {
    const errors = log
      .split(/\r?\n/)
      .filter((l) => l.trim() !== '' && !l.startsWith('ptxas info'))
      .join('\n');
    throw new SfcError(`nvcc failed to compile ${job.name} for ${arch}:\n${errors || `exit status ${status}`}`);
  }
  return {
    cubin: new Uint8Array(readFileSync(job.output)),
    reports: parsePtxasReport(log, arch),
    log,
    toolchain: job.toolchain,
  };
}

/** Compiles `source` to a cubin for `arch` with nvcc, synchronously. Throws SfcError on any failure. */
export function compileCuda(opts: CompileOptions): CompileResult {
  const job = prepare(opts);
  try {
    const r = spawnSync(job.nvcc, job.args, { cwd: job.dir, env: job.env, encoding: 'utf8', maxBuffer: 64 << 20 });
    if (r.error) throw new SfcError(`cannot run nvcc at ${job.nvcc}: ${r.error.message}`, { hint: NOT_FOUND_HINT });
    return finish(job, opts.arch, r.status, r.stdout ?? '', r.stderr ?? '');
  } finally {
    rmSync(job.dir, { recursive: true, force: true });
  }
}

/** The same, without blocking: lets `sfc build` run one nvcc per core. */
export function compileCudaAsync(opts: CompileOptions): Promise<CompileResult> {
  const job = prepare(opts);
  return new Promise<CompileResult>((resolve, reject) => {
    execFile(
      job.nvcc,
      job.args,
      { cwd: job.dir, env: job.env, encoding: 'utf8', maxBuffer: 64 << 20 },
      (err, stdout, stderr) => {
        try {
          const code = err
            ? (err as NodeJS.ErrnoException & { code?: unknown }).code === 'ENOENT'
              ? null
              : ((err as { code?: number }).code ?? 1)
            : 0;
          if (err && code === null)
            throw new SfcError(`cannot run nvcc at ${job.nvcc}: ${err.message}`, { hint: NOT_FOUND_HINT });
          resolve(finish(job, opts.arch, typeof code === 'number' ? code : 1, stdout, stderr));
        } catch (e) {
          reject(e);
        } finally {
          rmSync(job.dir, { recursive: true, force: true });
        }
      },
    );
  });
}

/** Plain-text table of ptxas reports, one row per kernel and arch, plus a count of kernels that spill. */
export function formatReportTable(reports: KernelReport[]): string {
  const header = ['kernel', 'arch', 'regs', 'smem', 'stack', 'spills (st/ld)'];
  const rows = reports.map((r) => [
    r.name,
    r.arch,
    String(r.registers),
    String(r.sharedBytes),
    String(r.stackBytes),
    `${r.spillStoreBytes}/${r.spillLoadBytes}`,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
  const fmt = (row: string[]) =>
    row
      .map((cell, i) => (i < 2 ? cell.padEnd(widths[i]) : cell.padStart(widths[i])))
      .join('  ')
      .trimEnd();
  const spilling = reports.filter((r) => r.spillStoreBytes > 0 || r.spillLoadBytes > 0).length;
  return [fmt(header), ...rows.map(fmt), `${spilling} of ${reports.length} kernels spill`].join('\n');
}
