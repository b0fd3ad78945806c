"""Config sections of training: tokenizer, token shards, pre-training, SFT, reward, DPO, RLHF."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from cluster.config.section import Section


class TokenizerConfig(Section):
    """``natal tokenizer``: a byte-level BPE trained on a sample of the documents."""

    vocab_size: int = Field(8192, ge=300, le=1 << 20, description="BPE vocabulary incl. specials")
    min_frequency: int = Field(2, ge=1, description="pairs seen fewer times are not merged")
    sample_docs: int = Field(50_000, ge=1, description="documents read to train it, at most")
    seed: int = Field(0, description="which documents are sampled")
    bos_token: str = "<|bos|>"
    eos_token: str = Field("<|eos|>", description="separates documents in token shards")
    pad_token: str = "<|pad|>"
    role_tokens: list[str] = Field(
        default_factory=lambda: ["<|system|>", "<|user|>", "<|assistant|>", "<|end|>"],
        description="chat role markers used by the chat template; the last one ends a turn",
    )


class TokenizeConfig(Section):
    """``natal tokenize``: packed fixed-length token shards with a source mixture."""

    seq_len: int = Field(512, ge=8, description="tokens per packed training sequence")
    val_fraction: float = Field(0.01, ge=0, lt=1, description="documents held out for validation")
    seed: int = Field(0, description="fixes the split and the mixture sampling")
    dtype: Literal["auto", "uint16", "uint32"] = Field(
        "auto", description="token dtype on disk (auto: uint16 when the vocabulary fits)"
    )
    mixture: dict[str, float] = Field(
        default_factory=dict,
        description="source → target share of tokens, e.g. {web: 0.7, code: 0.3}; "
        "sources are up/down-sampled to it ({}: natural proportions)",
    )
    batch_size: int = Field(256, ge=1, description="documents per tokenization batch")


class TrainingConfig(Section):
    """What every Ray Train stage shares (pipelines/training/loop.py); stages subclass it."""

    workers: int = Field(1, ge=1, description="Ray Train workers (processes)")
    use_gpu: bool = Field(False, description="one GPU per worker, NCCL; else CPU and gloo")
    cpus_per_worker: float = Field(1.0, gt=0, description="CPUs per worker (torch threads)")
    strategy: Literal["ddp", "fsdp"] = Field("ddp", description="fsdp: FSDP2 fully_shard")
    micro_batch: int = Field(8, ge=1, description="sequences per worker per micro-step")
    grad_accum: int = Field(1, ge=1, description="micro-steps per optimizer step")
    lr: float = Field(3e-4, gt=0, description="peak learning rate")
    min_lr: float = Field(3e-5, ge=0, description="learning rate at the end of cosine decay")
    warmup_steps: int = Field(100, ge=0, description="linear warmup from 0 to lr")
    max_steps: int = Field(1000, ge=1, description="optimizer steps of the whole run")
    weight_decay: float = Field(0.1, ge=0, description="AdamW decay (not on norms, biases)")
    betas: tuple[float, float] = Field((0.9, 0.95), description="AdamW betas")
    grad_clip: float = Field(1.0, ge=0, description="max global grad norm (0: no clipping)")
    log_every: int = Field(10, ge=1, description="steps between metric lines")
    eval_every: int = Field(100, ge=0, description="steps between validation runs (0: only at end)")
    eval_batches: int = Field(8, ge=1, description="micro-batches per worker per validation")
    checkpoint_every: int = Field(100, ge=0, description="steps between checkpoints (0: only end)")
    keep_checkpoints: int = Field(2, ge=1, description="latest checkpoints kept")
    max_failures: int = Field(2, ge=0, description="worker-group restarts from the checkpoint")
    activation_checkpointing: bool = Field(False, description="recompute activations (memory)")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="bf16 autocast; auto: bf16 on GPU, fp32 on CPU"
    )
    peak_flops: float | None = Field(
        None, gt=0, description="peak FLOP/s per worker for MFU (None: a matmul probe)"
    )
    storage_path: str | None = Field(
        None, description="checkpoints, local or s3:// (None: RUNDIR/checkpoints)"
    )
    seed: int = Field(0, description="model init and data order")


class PretrainConfig(TrainingConfig):
    """``natal pretrain``: a Llama model from a preset on packed token shards."""

    preset: Literal["tiny", "small", "1b", "7b"] = Field("tiny", description="model size")
    max_seq_len: int | None = Field(
        None, ge=8, description="model context (None: the preset's); shards may not exceed it"
    )
    sample_prompt: str = Field("The", description="text the run continues at the end")


class LoRASection(Section):
    """LoRA adapters (pipelines/posttrain/lora.py): the same keys in every stage that tunes."""

    lora_r: int = Field(
        0, ge=0, description="LoRA rank: adapters train, the base is frozen (0: full)"
    )
    lora_alpha: float = Field(16.0, gt=0, description="LoRA scale alpha (the update is alpha/r)")
    lora_dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the adapters' input")
    lora_targets: list[str] = Field(
        default_factory=lambda: ["all-linear"],
        description="linear layers that get adapters, by name (q_proj, v_proj, ...) or all-linear",
    )


class RLHFConfig(LoRASection):
    """``natal rlhf``: rollout actors (vLLM), a reward actor, learner actors, weight sync."""

    algo: Literal["grpo", "ppo", "rloo"] = Field("grpo", description="advantage estimator")
    steps: int = Field(20, ge=1, description="RL steps (generate → score → train → sync)")
    prompts_per_step: int = Field(8, ge=1, description="prompts sampled per step")
    group_size: int = Field(4, ge=1, description="answers per prompt (GRPO/RLOO group)")
    max_new_tokens: int = Field(32, ge=1, description="answer length cap")
    max_prompt_tokens: int = Field(256, ge=1, description="longer prompts are counted, skipped")
    heldout_fraction: float = Field(
        0.1,
        ge=0,
        lt=1,
        description="prompts set aside (seeded by rlhf.seed) and never trained on: "
        "RUNDIR/heldout_prompts.jsonl, what natal eval judges the policy on",
    )
    temperature: float = Field(
        1.0, description="rollout sampling temperature; the learner divides its logits by it too"
    )
    top_p: float = Field(
        1.0, gt=0, le=1, description="nucleus sampling; < 1 makes the learner's ratios approximate"
    )
    lr: float = Field(1e-4, gt=0, description="policy learning rate (AdamW)")
    critic_lr: float = Field(1e-4, gt=0, description="PPO value model learning rate")
    kl_coef: float = Field(0.05, ge=0, description="weight of KL(policy ‖ reference)")
    kl_estimator: Literal["k1", "k2", "k3"] = Field("k3", description="Schulman's estimators")
    clip_eps: float = Field(0.2, gt=0, description="PPO ratio clip")
    value_clip: float = Field(0.2, gt=0)
    gamma: float = Field(1.0, ge=0, le=1, description="PPO discount")
    lam: float = Field(0.95, ge=0, le=1, description="GAE lambda")
    loss_agg: Literal["token-mean", "seq-mean-token-sum", "seq-mean-token-mean"] = Field(
        "token-mean",
        description="how token losses become one: a sum over the whole step (all learners) "
        "divided by its tokens, or by its sequences (Dr. GRPO: seq-mean-token-sum)",
    )
    importance_sampling: Literal["tis", "mis", "none"] = Field(
        "tis",
        description="correction for samples the rollout engine drew (stale weights in async "
        "mode, other kernels): truncated (tis) or masked (mis) ratio learner / rollout",
    )
    tis_cap: float = Field(2.0, ge=1, description="the importance ratio's cap (tis, mis)")
    epochs: int = Field(1, ge=1, description="passes over each step's samples")
    minibatch_size: int = Field(32, ge=1, description="samples per optimizer step per learner")
    grad_clip: float = Field(1.0, ge=0)
    rollout_actors: int = Field(1, ge=1, description="vLLM engines generating in parallel")
    learners: int = Field(1, ge=1, description="data-parallel learner actors (gloo/nccl group)")
    rollout_cpus: float = Field(1.0, gt=0, description="CPUs per rollout actor")
    learner_cpus: float = Field(0.5, gt=0, description="CPUs per learner actor")
    reward_cpus: float = Field(0.5, gt=0, description="CPUs of the reward actor")
    use_gpu: bool = Field(False, description="one GPU per rollout and learner actor")
    weight_sync: Literal["object_store", "broadcast"] = Field(
        "object_store",
        description="learner → rollouts: one ray.put of the weights, or a collective broadcast "
        "(NCCL with use_gpu, gloo on CPU)",
    )
    kv_cache_mb: int = Field(256, ge=16, description="vLLM KV cache per rollout actor (CPU)")
    mode: Literal["sync", "async"] = Field(
        "sync", description="async: generate step k+1 while training step k (1-step stale)"
    )
    reward_fns: list[str] = Field(default_factory=list, description="module:function rules")
    reward_model: str | None = Field(None, description="HF dir from natal reward")
    reward_model_weight: float = Field(1.0, description="weight of the reward model's score")
    reward_fn_weight: float = Field(1.0, description="weight of the rules' scores")
    checkpoint_every: int = Field(10, ge=0, description="steps between checkpoints (0: end)")
    actor_timeout_s: float = Field(600.0, gt=0, description="longest wait on any actor call")
    seed: int = 0

    @field_validator("temperature")
    @classmethod
    def _explores(cls, value: float) -> float:
        if value <= 0:
            raise ValueError(
                "must be > 0: RL learns from sampled answers (0 is greedy, no exploration)"
            )
        return value


class FinetuneConfig(LoRASection, TrainingConfig):
    """Fine-tuning's schedule: short, gentle, no weight decay (SFT, reward model, DPO)."""

    lr: float = Field(1e-4, gt=0, description="peak learning rate")
    min_lr: float = Field(1e-5, ge=0, description="learning rate at the end of cosine decay")
    warmup_steps: int = Field(10, ge=0, description="linear warmup from 0 to lr")
    max_steps: int = Field(200, ge=1, description="optimizer steps of the whole run")
    weight_decay: float = Field(0.0, ge=0, description="AdamW decay (not on norms, biases)")
    eval_every: int = Field(50, ge=0, description="steps between validation runs (0: only at end)")
    chat_template: str | None = Field(
        None,
        description="Jinja file (local or fsspec URL) replacing the tokenizer's chat template; "
        "the exported model keeps it",
    )


class SFTConfig(FinetuneConfig):
    """``natal sft``: loss on assistant tokens of chat-formatted conversations."""

    max_seq_len: int = Field(
        512, ge=8, description="tokens per row; longer conversations keep their start (counted)"
    )
    packing: bool = Field(
        True, description="several conversations per row, attention isolated by position restarts"
    )
    val_fraction: float = Field(0.05, ge=0, lt=1, description="conversations held out")
    sample_prompt: str | None = Field(
        None,
        description="asked before and after training, greedy, on the driver; the answers go "
        "in the stats (None: the first user turn of the first held-out conversation)",
    )
    sample_tokens: int = Field(
        48, ge=0, description="tokens of the sample answers (0: no sample, e.g. big models)"
    )


class RewardConfig(FinetuneConfig):
    """``natal reward``: a one-output sequence classifier with the Bradley–Terry loss."""

    max_seq_len: int = Field(
        512, ge=8, description="tokens per prompt+response; longer keep their end (counted)"
    )
    margin: float = Field(0.0, ge=0, description="loss −log σ(r_chosen − r_rejected − margin)")
    val_fraction: float = Field(0.1, ge=0, lt=1, description="pairs held out for accuracy")
    micro_batch: int = Field(8, ge=1, description="pairs per worker per micro-step")
    eval_batches: int = Field(32, ge=1, description="micro-batches per worker per validation")


class DPOConfig(FinetuneConfig):
    """``natal dpo``: direct preference optimization against a frozen reference model."""

    beta: float = Field(0.1, gt=0, description="β: strength of the KL tie to the reference")
    label_smoothing: float = Field(
        0.0, ge=0, lt=0.5, description="assumed label noise ε (conservative DPO)"
    )
    max_seq_len: int = Field(
        512, ge=8, description="tokens per prompt+response; longer keep their end (counted)"
    )
    val_fraction: float = Field(0.05, ge=0, lt=1, description="pairs held out")
    micro_batch: int = Field(4, ge=1, description="pairs per worker per micro-step")
    lr: float = Field(1e-5, gt=0, description="peak learning rate")
    min_lr: float = Field(1e-6, ge=0, description="learning rate at the end of cosine decay")
