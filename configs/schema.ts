// The typed schema of sfc's run configuration. Every key the Self-Forcing reference reads from its
// merged OmegaConf config (configs/*.yaml, getattr(config, ...) defaults in its trainers, models and
// pipelines, and the values its train.py copies in from argparse) is here with its type, default and
// meaning, so a typo is an error instead of a silently ignored key. The reference keeps one flat
// namespace; so do we, to stay drop-in compatible with its YAML files.
import { z } from 'zod';

const int = () => z.number().int();
const nonNegInt = () => z.number().int().nonnegative();
const posInt = () => z.number().int().positive();
const fsdpWrap = () => z.enum(['size', 'transformer']);

/** `model_kwargs`: forwarded by the reference to its WanDiffusionWrapper / CausalWanModel. */
export const modelKwargsSchema = z
  .object({
    model_name: z
      .string()
      .default('Wan2.1-T2V-1.3B')
      .describe('Model preset of the generator (configs/models/<name>.yaml, case-insensitive)'),
    timestep_shift: z
      .number()
      .positive()
      .default(8.0)
      .describe("Flow-matching shift of the generator scheduler (sigma' = s*sigma / (1 + (s-1)*sigma))"),
    local_attn_size: int()
      .refine((v) => v === -1 || v > 0, 'must be -1 (global attention) or a positive frame count')
      .default(-1)
      .describe('Self-attention window in latent frames; -1 attends to the whole cache'),
    sink_size: nonNegInt().default(0).describe('Frames kept at the start of a rolling KV cache (attention sink)'),
    relative_rope: z
      .boolean()
      .default(false)
      .describe(
        "sfc: RoPE positions relative to the KV cache's slots, so a rolling cache runs past the 1024-frame tables (the sink sits just before the window)",
      ),
  })
  .strict();

export const configSchema = z
  .object({
    // ---- run / model selection -------------------------------------------------------------
    causal: z.boolean().default(true).describe('Causal (autoregressive) generator; false = bidirectional Wan'),
    i2v: z.boolean().default(false).describe('Image-to-video: the first latent frame comes from an image'),
    independent_first_frame: z
      .boolean()
      .default(false)
      .describe('Generate the first latent frame as its own block, then blocks of num_frame_per_block'),
    num_frame_per_block: posInt().default(1).describe('Latent frames per autoregressive chunk (3 in Self-Forcing)'),
    model_kwargs: modelKwargsSchema.default(modelKwargsSchema.parse({})).describe('Generator constructor arguments'),
    real_name: z.string().default('Wan2.1-T2V-1.3B').describe('Model preset of the real-score (teacher) network'),
    fake_name: z.string().default('Wan2.1-T2V-1.3B').describe('Model preset of the fake-score (critic) network'),
    generator_ckpt: z
      .union([z.string(), z.literal(false)])
      .default(false)
      .describe('Checkpoint the generator starts from (e.g. checkpoints/ode_init.pt); false = base weights'),
    ckpt_step: nonNegInt().default(0).describe('Step label of the checkpoint being evaluated'),

    // ---- denoising schedule ------------------------------------------------------------------
    denoising_step_list: z
      .array(nonNegInt())
      .min(1)
      .optional()
      .describe('Few-step timesteps, e.g. [1000, 750, 500, 250]; absent = multi-step sampling with a solver'),
    warp_denoising_step: z
      .boolean()
      .default(false)
      .describe('Map denoising_step_list through the shifted scheduler timesteps (drop a trailing 0 then)'),
    num_train_timestep: posInt().default(1000).describe('Training timesteps of the flow-matching scheduler'),
    timestep_shift: z.number().positive().default(1.0).describe('Shift of the solver / training scheduler'),
    critic_timestep_shift: z
      .number()
      .positive()
      .optional()
      .describe('Shift for critic timesteps (default: timestep_shift)'),
    context_noise: nonNegInt().default(0).describe('Timestep used for the clean KV-cache pass after each chunk'),
    guidance_scale: z.number().default(3.0).describe('Classifier-free guidance scale (teacher / multi-step sampling)'),
    real_guidance_scale: z.number().optional().describe('CFG scale of the real score (default: guidance_scale)'),
    fake_guidance_scale: z.number().optional().describe('CFG scale of the fake score (default: 0)'),
    negative_prompt: z.string().default('').describe('Negative prompt for CFG'),
    ts_schedule: z.boolean().default(true).describe('Restrict score timesteps to the current denoising step range'),
    ts_schedule_max: z.boolean().default(false).describe('Use the maximum of the step range as the upper bound'),
    min_score_timestep: nonNegInt().default(0).describe('Lowest timestep sampled for score distillation'),
    noise_augmentation_max_timestep: nonNegInt().default(0).describe('Noise augmentation of the context (0 = off)'),
    same_step_across_blocks: z
      .boolean()
      .default(true)
      .describe('Self-Forcing rollout: one random exit step shared by all blocks'),
    last_step_only: z.boolean().default(false).describe('Self-Forcing rollout: always exit at the last step'),
    teacher_forcing: z.boolean().default(false).describe('Condition on ground-truth context (teacher forcing)'),
    concat_time_embeddings: z.boolean().default(false).describe('Concatenate time embeddings (reference option)'),

    // ---- shapes -----------------------------------------------------------------------------
    height: posInt().default(480).describe('Video height in pixels (multiple of 16)'),
    width: posInt().default(832).describe('Video width in pixels (multiple of 16)'),
    num_frames: posInt().default(81).describe('Video frames (4k+1)'),
    num_training_frames: posInt().default(21).describe('Latent frames per training rollout'),
    image_or_video_shape: z
      .array(posInt())
      .length(5)
      .default([1, 21, 16, 60, 104])
      .describe('Latent shape [B, F, C, H, W] used by the trainers'),

    // ---- training -----------------------------------------------------------------------------
    trainer: z
      .enum(['score_distillation', 'diffusion', 'gan', 'ode'])
      .default('score_distillation')
      .describe('Which trainer runs'),
    distribution_loss: z
      .enum(['dmd', 'sid', 'causvid', 'ode'])
      .default('dmd')
      .describe('Distribution-matching loss of the score_distillation trainer'),
    denoising_loss_type: z
      .enum(['flow', 'x0', 'v', 'noise'])
      .default('flow')
      .describe('Critic / diffusion loss target'),
    mixed_precision: z.boolean().default(true).describe('bf16 weights and activations (else float32)'),
    seed: int().default(0).describe('Random seed (0 in training = draw one at random, as the reference does)'),
    lr: z.number().positive().default(2.0e-6).describe('Generator learning rate'),
    lr_critic: z.number().positive().optional().describe('Critic learning rate (default: lr)'),
    gen_lr: z.number().positive().optional().describe('GAN trainer: generator learning rate'),
    critic_lr: z.number().positive().optional().describe('GAN trainer: critic learning rate'),
    beta1: z.number().min(0).max(1).default(0.0).describe('AdamW beta1 (generator)'),
    beta2: z.number().min(0).max(1).default(0.999).describe('AdamW beta2 (generator)'),
    beta1_critic: z.number().min(0).max(1).default(0.0).describe('AdamW beta1 (critic)'),
    beta2_critic: z.number().min(0).max(1).default(0.999).describe('AdamW beta2 (critic)'),
    weight_decay: z.number().min(0).default(0.01).describe('AdamW weight decay'),
    max_grad_norm_generator: z.number().positive().default(10.0).describe('Gradient clipping norm (generator)'),
    max_grad_norm_critic: z.number().positive().default(10.0).describe('Gradient clipping norm (critic)'),
    loss_scale: z.number().positive().default(1.0).describe('Multiplier on the training loss'),
    dfake_gen_update_ratio: posInt().default(5).describe('Critic updates per generator update'),
    discriminator_lr_multiplier: z.number().positive().default(1.0).describe('GAN: discriminator lr multiplier'),
    discriminator_warmup_steps: nonNegInt().default(0).describe('GAN: discriminator-only warm-up steps'),
    gan_g_weight: z.number().default(1e-2).describe('GAN: generator adversarial loss weight'),
    gan_d_weight: z.number().default(1e-2).describe('GAN: discriminator loss weight'),
    r1_weight: z.number().min(0).default(0.0).describe('GAN: R1 regulariser weight'),
    r2_weight: z.number().min(0).default(0.0).describe('GAN: R2 regulariser weight'),
    r1_sigma: z.number().positive().default(0.01).describe('GAN: R1 noise sigma'),
    r2_sigma: z.number().positive().default(0.01).describe('GAN: R2 noise sigma'),
    relativistic_discriminator: z.boolean().default(false).describe('GAN: relativistic discriminator loss'),
    num_class: posInt().default(1).describe('GAN: classifier outputs of the discriminator head'),
    sid_alpha: z.number().default(1.0).describe('SiD: alpha of the score-identity loss'),
    ema_weight: z.number().min(0).max(1).default(0.99).describe('EMA decay of the generator (0 = no EMA)'),
    ema_start_step: nonNegInt().default(200).describe('Step at which EMA starts'),
    gradient_checkpointing: z.boolean().default(true).describe('Recompute activations in the backward pass'),
    batch_size: posInt().default(1).describe('Per-GPU batch size'),
    total_batch_size: posInt().optional().describe('Global batch size (gradient accumulation fills the gap)'),
    log_iters: posInt().default(50).describe('Checkpoint / log interval in steps'),
    gc_interval: posInt().default(100).describe('Steps between garbage collections'),
    data_path: z.string().default('prompts/vidprom_filtered_extended.txt').describe('Training prompts (or LMDB)'),
    load_raw_video: z.boolean().default(false).describe('Load raw videos (needs the VAE encoder in training)'),
    max_pair: posInt().default(100000000).describe('Maximum pairs read from an LMDB data set'),
    text_encoder_cpu_offload: z.boolean().default(false).describe('Keep the text encoder on the CPU between uses'),

    // ---- distribution (FSDP in the reference; sfc shards with its own NCCL path) ---------------
    sharding_strategy: z
      .enum(['full', 'hybrid_full', 'hybrid_zero2', 'no_shard'])
      .default('hybrid_full')
      .describe('Parameter sharding across GPUs'),
    generator_fsdp_wrap_strategy: fsdpWrap().default('size').describe('Sharding unit of the generator'),
    real_score_fsdp_wrap_strategy: fsdpWrap().default('size').describe('Sharding unit of the real score'),
    fake_score_fsdp_wrap_strategy: fsdpWrap().default('size').describe('Sharding unit of the fake score'),
    text_encoder_fsdp_wrap_strategy: fsdpWrap().default('size').describe('Sharding unit of the text encoder'),

    // ---- logging and checkpoint control (train.py copies some of these from argparse) ----------
    wandb_host: z.string().default('').describe('Weights & Biases host (sfc logs locally; kept for compatibility)'),
    wandb_key: z.string().default('').describe('Weights & Biases key (unused by sfc; kept for compatibility)'),
    wandb_entity: z.string().default('').describe('Weights & Biases entity (unused by sfc)'),
    wandb_project: z.string().default('').describe('Weights & Biases project (unused by sfc)'),
    wandb_save_dir: z.string().default('').describe('Weights & Biases directory (unused by sfc)'),
    disable_wandb: z.boolean().default(true).describe('Disable Weights & Biases (sfc never uses it)'),
    logdir: z.string().default('').describe('Directory for logs and checkpoints'),
    config_name: z.string().default('').describe('Run name (train.py sets it from the config file name)'),
    no_save: z.boolean().default(false).describe('Do not write checkpoints'),
    no_visualize: z.boolean().default(false).describe('Do not decode sample videos during training'),
    load: z.string().optional().describe('GAN trainer: checkpoint to resume from'),
    skip_optimizer_scheduler: z.boolean().default(false).describe('GAN trainer: do not restore optimizer state'),
    force_start_w_ema: z.boolean().default(false).describe('GAN trainer: start from the EMA weights'),
    force_reset_zero_step: z.boolean().default(false).describe('GAN trainer: restart the step counter'),
    force_reinit_ema: z.boolean().default(false).describe('GAN trainer: re-initialise EMA from the weights'),

    // ---- evaluation / inference --------------------------------------------------------------
    prompt_name: z.string().default('MovieGenVideoBench').describe('Name of the evaluation prompt set'),
    prompt_path: z.string().default('prompts/MovieGenVideoBench.txt').describe('Evaluation prompts file'),
    eval_first_n: posInt().default(64).describe('Evaluate the first N prompts'),
    num_samples: posInt().default(1).describe('Samples per prompt'),
  })
  .strict();

export type SfcConfig = z.infer<typeof configSchema>;
export type ModelKwargs = z.infer<typeof modelKwargsSchema>;
