import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { configReferenceMarkdown, knownKeys, loadConfig, loadModelPreset, presetNames } from '../../configs/index.js';
import { packageRoot } from '../../dsl/paths.js';
import { errorOf, tempFiles } from '../helpers.js';

const root = packageRoot(import.meta.url);
const dmd = join(root, 'configs', 'self_forcing_dmd.yaml');
const sid = join(root, 'configs', 'self_forcing_sid.yaml');

// Every key the Self-Forcing reference reads from its merged config: its YAML files, its getattr()
// defaults, and what train.py/inference.py copy in. (Key names are facts of its interface.)
const referenceKeys = [
  'independent_first_frame',
  'warp_denoising_step',
  'weight_decay',
  'same_step_across_blocks',
  'discriminator_lr_multiplier',
  'last_step_only',
  'i2v',
  'num_training_frames',
  'gc_interval',
  'context_noise',
  'causal',
  'ckpt_step',
  'prompt_name',
  'prompt_path',
  'eval_first_n',
  'num_samples',
  'height',
  'width',
  'num_frames',
  'generator_ckpt',
  'generator_fsdp_wrap_strategy',
  'real_score_fsdp_wrap_strategy',
  'fake_score_fsdp_wrap_strategy',
  'real_name',
  'text_encoder_fsdp_wrap_strategy',
  'denoising_step_list',
  'ts_schedule',
  'num_train_timestep',
  'timestep_shift',
  'guidance_scale',
  'denoising_loss_type',
  'mixed_precision',
  'seed',
  'wandb_host',
  'wandb_key',
  'wandb_entity',
  'wandb_project',
  'sharding_strategy',
  'lr',
  'lr_critic',
  'beta1',
  'beta2',
  'beta1_critic',
  'beta2_critic',
  'data_path',
  'batch_size',
  'ema_weight',
  'ema_start_step',
  'total_batch_size',
  'log_iters',
  'negative_prompt',
  'dfake_gen_update_ratio',
  'image_or_video_shape',
  'distribution_loss',
  'trainer',
  'gradient_checkpointing',
  'num_frame_per_block',
  'load_raw_video',
  'model_kwargs',
  'model_kwargs.timestep_shift',
  'model_kwargs.local_attn_size',
  'model_kwargs.sink_size',
  'model_kwargs.model_name',
  'sid_alpha',
  'concat_time_embeddings',
  'critic_timestep_shift',
  'fake_name',
  'gan_d_weight',
  'gan_g_weight',
  'min_score_timestep',
  'noise_augmentation_max_timestep',
  'r1_sigma',
  'r1_weight',
  'r2_sigma',
  'r2_weight',
  'relativistic_discriminator',
  'teacher_forcing',
  'ts_schedule_max',
  'discriminator_warmup_steps',
  'loss_scale',
  'max_grad_norm_critic',
  'max_grad_norm_generator',
  'max_pair',
  'text_encoder_cpu_offload',
  'real_guidance_scale',
  'fake_guidance_scale',
  'no_visualize',
  'no_save',
  'logdir',
  'config_name',
  'wandb_save_dir',
  'disable_wandb',
  'load',
  'skip_optimizer_scheduler',
  'force_start_w_ema',
  'force_reset_zero_step',
  'force_reinit_ema',
  'critic_lr',
  'gen_lr',
  'num_class',
];

describe('config loading', () => {
  it('merges default_config.yaml, then the task config, then --set, in that order', () => {
    const base = loadConfig();
    expect(base.config.num_frame_per_block).toBe(1); // schema default
    expect(base.config.height).toBe(480); // default_config.yaml
    const task = loadConfig({ configPath: dmd });
    expect(task.config.num_frame_per_block).toBe(3);
    expect(task.config.denoising_step_list).toEqual([1000, 750, 500, 250]);
    expect(task.config.weight_decay).toBe(0.01); // from the default layer
    const sidCfg = loadConfig({ configPath: sid });
    expect(sidCfg.config.weight_decay).toBe(0); // the task layer wins
    const over = loadConfig({ configPath: dmd, overrides: ['num_frame_per_block=1', 'model_kwargs.sink_size=1'] });
    expect(over.config.num_frame_per_block).toBe(1);
    expect(over.config.model_kwargs).toEqual({
      model_name: 'Wan2.1-T2V-1.3B',
      timestep_shift: 5, // kept from the task layer: mappings merge key by key
      local_attn_size: -1,
      sink_size: 1,
      relative_rope: false,
    });
    expect(over.sources.get('num_frame_per_block')?.file).toBe('--set num_frame_per_block=1');
    expect(over.sources.get('lr')).toMatchObject({ file: dmd, line: expect.any(Number) });
  });

  it('replaces lists instead of merging them (OmegaConf semantics)', () => {
    const dir = tempFiles({ 'a.yaml': 'denoising_step_list: [1000, 500]\n' });
    const { config } = loadConfig({ configPath: join(dir, 'a.yaml'), overrides: ['denoising_step_list=[999]'] });
    expect(config.denoising_step_list).toEqual([999]);
  });

  it('parses --set values as YAML and keeps strings with spaces', () => {
    const { config } = loadConfig({ overrides: ['negative_prompt=blurry, static', 'lr=1e-5', 'i2v=true'] });
    expect(config.negative_prompt).toBe('blurry, static');
    expect(config.lr).toBe(1e-5);
    expect(config.i2v).toBe(true);
  });

  it('knows every key the reference reads', () => {
    const known = new Set(knownKeys());
    expect(referenceKeys.filter((k) => !known.has(k))).toEqual([]);
  });

  it('round-trips every key: dump the merged config to YAML, load it again, get the same config', () => {
    for (const cfgPath of [undefined, dmd, sid]) {
      const first = loadConfig({ configPath: cfgPath, overrides: ['lr_critic=3e-7', 'real_guidance_scale=2.5'] });
      const dir = tempFiles({ 'dump.yaml': stringify(first.config) });
      const second = loadConfig({ configPath: join(dir, 'dump.yaml') });
      expect(second.config).toEqual(first.config);
      for (const k of referenceKeys) {
        const get = (c: object) => k.split('.').reduce<unknown>((o, p) => (o as Record<string, unknown>)?.[p], c);
        expect(get(second.config), k).toEqual(get(first.config));
      }
    }
  });

  it('keeps the reference values of the shipped task configs', () => {
    const { config } = loadConfig({ configPath: dmd });
    expect(config).toMatchObject({
      real_name: 'Wan2.1-T2V-14B',
      lr: 2e-6,
      lr_critic: 4e-7,
      timestep_shift: 5,
      warp_denoising_step: true,
      image_or_video_shape: [1, 21, 16, 60, 104],
      ema_weight: 0.99,
      dfake_gen_update_ratio: 5,
      generator_ckpt: 'checkpoints/ode_init.pt',
    });
    expect(config.negative_prompt.length).toBeGreaterThan(50);
  });
});

describe('bad configs give one clear line', () => {
  const bad = (yaml: string, overrides: string[] = []) => {
    const dir = tempFiles({ 'bad.yaml': yaml });
    return errorOf(() => loadConfig({ configPath: join(dir, 'bad.yaml'), overrides })).replace(dir, '<dir>');
  };
  const cases: [string, string, string[], string][] = [
    [
      'misspelt key',
      'lr_critc: 1.0e-6\n',
      [],
      "<dir>/bad.yaml:1:1: unknown key 'lr_critc' (did you mean 'lr_critic'?)",
    ],
    [
      'key at the wrong level',
      'sink_size: 1\n',
      [],
      "<dir>/bad.yaml:1:1: unknown key 'sink_size' (did you mean 'model_kwargs.sink_size'?)",
    ],
    [
      'unknown nested key',
      'model_kwargs:\n  local_attn: 12\n',
      [],
      "<dir>/bad.yaml:2:3: unknown key 'model_kwargs.local_attn' (did you mean 'model_kwargs.local_attn_size'?)",
    ],
    ['unknown key, nothing close', 'zzzz_qqq: 1\n', [], "<dir>/bad.yaml:1:1: unknown key 'zzzz_qqq'"],
    [
      'string for a number',
      'seed: 0\nlr: fast\n',
      [],
      `<dir>/bad.yaml:2:1: 'lr' is "fast" (a string); expected a number`,
    ],
    [
      'float for an int',
      'num_frame_per_block: 2.5\n',
      [],
      "<dir>/bad.yaml:1:1: 'num_frame_per_block' is 2.5 (a number); expected an integer",
    ],
    [
      'zero where positive',
      'num_frame_per_block: 0\n',
      [],
      "<dir>/bad.yaml:1:1: 'num_frame_per_block' is 0 (a number); too small: expected number to be >0",
    ],
    [
      'bad enum',
      'trainer: dmd\n',
      [],
      `<dir>/bad.yaml:1:1: 'trainer' is "dmd" (a string); expected one of "score_distillation", "diffusion", "gan", "ode"`,
    ],
    [
      'scalar for a list',
      'denoising_step_list: 1000\n',
      [],
      "<dir>/bad.yaml:1:1: 'denoising_step_list' is 1000 (a number); expected a list",
    ],
    [
      'bad list element',
      'denoising_step_list: [1000, x]\n',
      [],
      `<dir>/bad.yaml:1:1: 'denoising_step_list[1]' is "x" (a string); expected a number`,
    ],
    [
      'wrong list length',
      'image_or_video_shape: [1, 21, 16]\n',
      [],
      "<dir>/bad.yaml:1:1: 'image_or_video_shape' is [1,21,16] (a list); too small: expected array to have exactly 5 items",
    ],
    [
      'bool for a mapping',
      'model_kwargs: true\n',
      [],
      "<dir>/bad.yaml:1:1: 'model_kwargs' is true (a boolean); expected a mapping",
    ],
    [
      'window of zero',
      'model_kwargs:\n  local_attn_size: 0\n',
      [],
      "<dir>/bad.yaml:2:3: 'model_kwargs.local_attn_size' is 0 (a number); must be -1 (global attention) or a positive frame count",
    ],
    [
      'YAML syntax',
      'lr: [1, 2\nseed: 3\n',
      [],
      '<dir>/bad.yaml:2:1: YAML syntax error: Flow sequence in block collection must be sufficiently indented and end with a ]',
    ],
    ['duplicate key', 'lr: 1\nlr: 2\n', [], '<dir>/bad.yaml:2:1: YAML syntax error: Map keys must be unique'],
    ['not a mapping', '- 1\n- 2\n', [], '<dir>/bad.yaml:1:1: a config file must be a mapping of keys to values'],
    ['bad --set key', '{}\n', ['lr_critc=1'], "--set lr_critc=1: unknown key 'lr_critc' (did you mean 'lr_critic'?)"],
    ['bad --set syntax', '{}\n', ['lr'], '--set lr: expected KEY=VALUE, e.g. --set lr=1e-5'],
    ['--set through a scalar', 'lr: 1.0e-6\n', ['lr.x=1'], "--set lr.x=1: 'lr' is not a mapping, cannot set 'lr.x'"],
    ['bad --set value', '{}\n', ['seed=abc'], `--set seed=abc: 'seed' is "abc" (a string); expected a number`],
  ];
  it.each(cases)('%s', (_name, yaml, overrides, expected) => {
    expect(bad(yaml, overrides)).toBe(expected);
  });

  it('a missing file is named', () => {
    expect(errorOf(() => loadConfig({ configPath: 'no/such.yaml' }))).toBe('config file not found: no/such.yaml');
  });
});

describe('model presets', () => {
  it('ships 1.3B, 14B and tiny with the Wan2.1 shapes', () => {
    expect(presetNames()).toEqual(['tiny', 'wan2.1-t2v-1.3b', 'wan2.1-t2v-14b']);
    const small = loadModelPreset('Wan2.1-T2V-1.3B');
    expect(small.dit).toMatchObject({ dim: 1536, ffn_dim: 8960, num_heads: 12, num_layers: 30, text_dim: 4096 });
    const big = loadModelPreset('wan2.1-t2v-14b');
    expect(big.dit).toMatchObject({ dim: 5120, ffn_dim: 13824, num_heads: 40, num_layers: 40 });
    const tiny = loadModelPreset('tiny');
    expect(tiny.dit.dim / tiny.dit.num_heads).toBe(64);
  });

  it('names the nearest preset for a typo', () => {
    expect(errorOf(() => loadModelPreset('wan2.1-t2v-1.3'))).toBe(
      "unknown model preset 'wan2.1-t2v-1.3' (did you mean 'wan2.1-t2v-1.3b'? presets: tiny, wan2.1-t2v-1.3b, wan2.1-t2v-14b)",
    );
  });

  it('validates preset files', () => {
    const dir = tempFiles({
      'p.yaml': readFileSync(join(root, 'configs/models/tiny.yaml'), 'utf8').replace('num_heads: 2', 'num_heads: 3'),
    });
    expect(errorOf(() => loadModelPreset(join(dir, 'p.yaml'))).replace(dir, '<dir>')).toBe(
      "<dir>/p.yaml:6:3: 'dit.dim' is 128 (a number); dim must be a multiple of num_heads (+1 more)",
    );
  });
});

describe('docs', () => {
  // SFC_UPDATE_DOCS=1 npx vitest run test/configs rewrites the generated table
  it('docs/configuration.md lists every key as the schema does', () => {
    const path = join(root, 'docs', 'configuration.md');
    const doc = readFileSync(path, 'utf8');
    const fresh = doc.replace(
      /<!-- keys:begin -->[\s\S]*<!-- keys:end -->/,
      `<!-- keys:begin -->\n${configReferenceMarkdown()}<!-- keys:end -->`,
    );
    if (process.env.SFC_UPDATE_DOCS === '1') writeFileSync(path, fresh);
    expect(doc).toBe(fresh);
  });
});
