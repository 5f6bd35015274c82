"""Prover settings ([prover] in lifelean.toml): generator, search budgets, workers."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from common.config_base import option


@dataclass
class ProverConfig:
    generator: Literal["knn", "hf", "vllm"] = option("knn", "tactic generator: 'knn' (memory bank, CPU), 'hf' "
                                                     "(transformers), 'vllm' (vLLM engine or server)")
    model: str | None = option(None, "generator model for 'hf'/'vllm': a Hugging Face id or local path")
    vllm_url: str | None = option(None, "OpenAI-compatible vLLM server URL (e.g. http://127.0.0.1:8000/v1); "
                                  "unset = in-process vLLM engine")
    num_tactics: int = option(8, "distinct tactics asked of the generator per expansion")
    num_premises: int = option(10, "retrieved premises put in the generator's context")
    premise_bytes: int = option(2048, "byte budget of the retrieved-premise context (ReProver uses 2048-2300)")
    max_expansions: int = option(64, "node expansions per theorem")
    timeout: float = option(60.0, "wall-clock seconds per theorem")
    tactic_timeout: float = option(5.0, "seconds per tactic in Lean")
    workers: int = option(1, "parallel prover processes (0 = one per CPU core)")
    ray_address: str | None = option(None, "Ray cluster to spread proving over ('auto' or host:port); unset = local")

    def __post_init__(self) -> None:
        for name in ("num_tactics", "max_expansions"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.timeout <= 0 or self.tactic_timeout <= 0:
            raise ValueError("timeout and tactic_timeout must be positive")
        if self.workers < 0:
            raise ValueError(f"workers must be 0 (auto) or more, got {self.workers}")
