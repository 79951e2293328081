// `sfc config`: prints the effective configuration (default_config.yaml <- --config <- --set) after
// validation, or the reference of every key. The same loading path every other command uses.
import type { Command } from 'commander';
import { stringify } from 'yaml';
import { loadConfig } from '../../configs/load.js';
import { configReference } from '../../configs/reference.js';
import type { Io } from '../main.js';

export function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

export function registerConfig(program: Command, io: Io): void {
  program
    .command('config')
    .description('print the merged, validated run configuration (or every key with --keys)')
    .option('-c, --config <file>', 'task config merged over configs/default_config.yaml')
    .option('-s, --set <key=value>', 'override a key (YAML value syntax; repeatable)', collect, [])
    .option('--format <format>', 'output format: yaml or json', 'yaml')
    .option('--keys', 'list every key with its type, default and meaning')
    .action((opts: { config?: string; set: string[]; format: string; keys?: boolean }) => {
      if (opts.keys) {
        io.stdout(configReference());
        return;
      }
      if (opts.format !== 'yaml' && opts.format !== 'json') {
        program.error(`error: --format must be yaml or json, got '${opts.format}'`, { exitCode: 2 });
      }
      const { config } = loadConfig({ configPath: opts.config, overrides: opts.set });
      io.stdout(opts.format === 'json' ? `${JSON.stringify(config, null, 2)}\n` : stringify(config, { lineWidth: 0 }));
    });
}
