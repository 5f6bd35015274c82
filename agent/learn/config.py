"""Learning settings ([learning] in lifelean.toml): retriever (and generator) training and strategies."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from common.config_base import option

STRATEGIES = ("naive", "frozen", "replay", "ewc", "distill", "adapters", "merge")


@dataclass
class LearningConfig:
    strategy: list[str] = option(["merge"], "stability-plasticity strategies, composed: naive, frozen, replay, "
                                 "ewc, distill, adapters, merge (default: the winner of bench/forgetting.py, "
                                 "highest ACC with BWT >= 0, above joint training on unseen Recall@10)")
    tune: Literal["query"] = option("query", "'query': only the state tower is tuned, so premise vectors stay valid "
                                    "and are never re-embedded (tuning both towers was removed: it re-embedded "
                                    "the whole corpus every step)")
    epochs: int = option(1, "epochs per repository at least (LeanAgent: 1)")
    min_steps: int = option(0, "gradient steps per repository at least: a small repository gets more passes "
                            "(each batch with its replay share), up to max_epochs; 0 = exactly `epochs`")
    max_epochs: int = option(8, "passes over one repository at most when min_steps asks for more")
    batch_size: int = option(16, "training pairs per batch")
    micro_batch: int = option(8, "proof states per forward pass, grouped by token length: the loss and gradients "
                              "of one padded pass over the batch (dropout masks are drawn per pass) for less "
                              "compute and activation memory (memory/embedder.py Encoder.embed)")
    activation_checkpointing: bool = option(True, "recompute each transformer layer's forward pass during the "
                                            "backward pass instead of keeping its activations (PyTorch activation "
                                            "checkpointing through the Hugging Face model's own switch; dropout's "
                                            "random state is replayed, so the weights are identical): recomputing "
                                            "every pass of a Mathlib/Data step took 17.8 s and 0.9 GB less than "
                                            "10.0 s without; false = faster, more memory")
    kept_activation_tokens: int = option(512, "with activation_checkpointing: padded tokens per training batch "
                                         "whose activations are kept instead of recomputed, shortest forward "
                                         "passes first (~0.3 MB each); the same weights at any value, less CPU "
                                         "for more memory; 0 = recompute every pass")
    lr: float = option(3e-5, "AdamW learning rate (bench/forgetting.py, full stream: 3e-5 beats 5e-5 and 1e-4 on "
                       "unseen theorems, with BWT > 0; distill then keeps what replay alone forgets)")
    weight_decay: float = option(0.01, "AdamW weight decay")
    grad_clip: float = option(1.0, "gradient-norm clipping (LeanAgent: 1.0); 0 = off")
    max_examples: int = option(2000, "training pairs per repository at most (sampled with the seed)")
    temperature: float = option(0.1, "InfoNCE softmax temperature over cosine similarities (bench/forgetting.py, "
                                "queries with the theorem's file: 0.1 beats 0.05 on val and test, BWT > 0)")
    hard_negatives: int = option(2, "negatives per example from the positive premise's file (random premises "
                                 "fill in when that file has too few)")
    mined_negatives: int = option(16, "negatives per example mined from the whole corpus with the current query "
                                  "tower (ANCE, Xiong et al. 2021): the highest-scoring non-positive premises; the "
                                  "document tower is frozen, so the mined index is never stale; 0 = off "
                                  "(bench/forgetting.py: above joint training on unseen theorems at no extra steps)")
    replay_ratio: float = option(0.5, "replay: share of each batch drawn from earlier repositories")
    ewc_lambda: float = option(100.0, "ewc: penalty weight (Fisher normalised to mean 1)")
    ewc_gamma: float = option(0.9, "ewc: decay of the running Fisher (online EWC)")
    ewc_samples: int = option(64, "ewc: examples whose per-example gradients estimate the Fisher")
    distill_alpha: float = option(1.0, "distill: weight of the KL term")
    distill_temperature: float = option(2.0, "distill: softmax temperature")
    lora_rank: int = option(8, "adapters: LoRA rank")
    lora_alpha: int = option(16, "adapters: LoRA scaling numerator (scale = alpha / rank)")
    lora_lr: float = option(5e-4, "adapters / generator: learning rate of LoRA parameters")
    lines_alpha: float = option(0.0, "merge: LiNeS scale of the shallowest block (embeddings)")
    lines_beta: float = option(1.0, "merge: LiNeS scale added linearly up to the deepest block (alpha + beta)")
    freeze_discarded: bool = option(True, "merge: parameters whose LiNeS scale is 0 (the embeddings, by default) "
                                    "are not trained, since the merge undoes their update; on the bundled example "
                                    "half the weights, their gradients and optimizer state (design note 24)")
    keep_checkpoints: int = option(2, "checkpoints kept on disk (newest first); older ones are deleted once a newer "
                                   "one is durable (each holds weights and optimizer state, ~270 MB for MiniLM)")
    snapshot_seconds: float = option(10.0, "seconds between mid-repository training snapshots: what a Ctrl-C or a "
                                     "kill can lose of a learn step (resuming stays identical)")
    train_generator: bool = option(False, "also fine-tune the 'hf' generator with LoRA after each repository")
    generator_batch_size: int = option(8, "generator: (prompt, tactic) pairs per batch")
    generator_max_examples: int = option(1000, "generator: training pairs per repository at most")
    generator_max_length: int = option(512, "generator: prompt + tactic tokens at most")
    processes: int = option(1, "processes that train the retriever together, one per GPU (torchrun + PyTorch "
                            "DistributedDataParallel, NCCL on GPUs, gloo on CPUs; each takes an equal share of every "
                            "batch's rows); 1 = train in the loop's own process")

    def __post_init__(self) -> None:
        unknown = [s for s in self.strategy if s not in STRATEGIES]
        if unknown:
            raise ValueError(f"unknown strategy '{unknown[0]}'; expected some of {', '.join(STRATEGIES)}")
        if "frozen" in self.strategy and len(self.strategy) > 1:
            raise ValueError("strategy 'frozen' (no training) cannot be combined with others")
        if not 0.0 <= self.replay_ratio < 1.0:
            raise ValueError(f"replay_ratio must be in [0, 1), got {self.replay_ratio}")
        if self.epochs < 0 or self.batch_size < 2 or self.micro_batch < 1:
            raise ValueError("epochs must be >= 0, batch_size >= 2 and micro_batch >= 1")
        if self.temperature <= 0 or self.distill_temperature <= 0:
            raise ValueError("temperatures must be positive")
        if not 0.0 < self.ewc_gamma <= 1.0:
            raise ValueError(f"ewc_gamma must be in (0, 1], got {self.ewc_gamma}")
        if self.keep_checkpoints < 1:
            raise ValueError(f"keep_checkpoints must be at least 1 (resuming needs the newest), got {self.keep_checkpoints}")
        if self.min_steps < 0 or self.max_epochs < 1 or self.mined_negatives < 0:
            raise ValueError("min_steps and mined_negatives must be >= 0, max_epochs >= 1")
        if self.hard_negatives < 0 or self.ewc_samples < 1 or self.lora_rank < 1:
            raise ValueError("hard_negatives must be >= 0, ewc_samples and lora_rank >= 1")
        if self.kept_activation_tokens < 0:
            raise ValueError(f"kept_activation_tokens must be 0 or more, got {self.kept_activation_tokens}")
        if self.processes < 1:
            raise ValueError(f"processes must be at least 1, got {self.processes}")
