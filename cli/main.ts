// The `sfc` command line. Each subcommand lives in cli/commands/ and registers itself here; there are
// no placeholders: a command appears once its feature works.
import { Command, CommanderError } from 'commander';
import { registerBuild } from './commands/build.js';
import { registerConfig } from './commands/config.js';
import { registerConvert } from './commands/convert.js';
import { registerDemo } from './commands/demo.js';
import { registerDoctor } from './commands/doctor.js';
import { registerBench } from './commands/bench.js';
import { registerInfer } from './commands/infer.js';
import { reportError } from './errors.js';
import { version } from './version.js';

export interface Io {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
}

const defaultIo: Io = {
  stdout: (s) => void process.stdout.write(s),
  stderr: (s) => void process.stderr.write(s),
};

export function buildProgram(io: Io): Command {
  const program = new Command('sfc')
    .description('Real-time autoregressive video diffusion (Self-Forcing on Wan2.1), compiled to fused CUDA kernels')
    .version(version(), '-V, --version', 'print the sfc version')
    .helpOption('-h, --help', 'show help')
    .showSuggestionAfterError(true)
    .configureOutput({ writeOut: io.stdout, writeErr: io.stderr })
    .exitOverride();
  registerBench(program, io);
  registerBuild(program, io);
  registerConfig(program, io);
  registerConvert(program, io);
  registerDemo(program, io);
  registerDoctor(program, io);
  registerInfer(program, io);
  for (const c of program.commands) c.exitOverride().configureOutput({ writeOut: io.stdout, writeErr: io.stderr });
  return program;
}

/** Runs the CLI; returns the exit code (0 ok, 1 failure, 2 usage error). */
export async function run(argv: string[], io: Io = defaultIo): Promise<number> {
  const debug = process.env.SFC_DEBUG === '1';
  const program = buildProgram(io);
  try {
    await program.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      // help and version exit through here with code 0; commander has already printed its message
      return e.exitCode === 0 ? 0 : 2;
    }
    return reportError(e, io.stderr, debug);
  }
}
