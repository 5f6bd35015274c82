"""Learning settings ([learning] in lifelean.toml): retriever (and generator) training and strategies."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from common.config_base import option

STRATEGIES = ("naive", "frozen", "replay", "ewc", "distill", "adapters", "merge")


@dataclass
class LearningConfig:
    strategy: list[str] = option(["replay"], "stability-plasticity strategies, composed in order: "
                                 "naive, frozen, replay, ewc, distill, adapters, merge")
    tune: Literal["query", "both"] = option("query", "'query' tunes only the state tower (premise vectors stay "
                                            "valid, no re-embedding); 'both' tunes both towers and re-embeds")
    epochs: int = option(1, "epochs per repository (LeanAgent: 1)")
    batch_size: int = option(16, "training pairs per batch")
    lr: float = option(2e-5, "AdamW learning rate")
    max_examples: int = option(2000, "training pairs per repository at most (sampled with the seed)")
    replay_ratio: float = option(0.5, "replay: share of each batch drawn from earlier repositories")
    ewc_lambda: float = option(100.0, "ewc: penalty weight (Fisher normalised to mean 1)")
    ewc_gamma: float = option(0.9, "ewc: decay of the running Fisher (online EWC)")
    distill_alpha: float = option(1.0, "distill: weight of the KL term")
    distill_temperature: float = option(2.0, "distill: softmax temperature")
    lora_rank: int = option(8, "adapters: LoRA rank")
    train_generator: bool = option(False, "also fine-tune the 'hf' generator with LoRA after each repository")

    def __post_init__(self) -> None:
        unknown = [s for s in self.strategy if s not in STRATEGIES]
        if unknown:
            raise ValueError(f"unknown strategy '{unknown[0]}'; expected some of {', '.join(STRATEGIES)}")
        if not 0.0 <= self.replay_ratio < 1.0:
            raise ValueError(f"replay_ratio must be in [0, 1), got {self.replay_ratio}")
        if self.epochs < 0 or self.batch_size < 2:
            raise ValueError("epochs must be >= 0 and batch_size >= 2")
