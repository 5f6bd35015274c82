"""Prover settings ([prover] in lifelean.toml): environment, generator, search budgets, workers."""
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
    env: Literal["replay", "lean"] = option("replay", "how tactics are checked: 'replay' (the recorded Lean trace; "
                                            "no Lean needed, not a Lean check) or 'lean' (LeanDojo on a traced repo)")
    replay_scope: Literal["theorem", "repository"] = option(
        "repository", "replay answers from the theorem's own trace only, or from every recorded step of its repository")
    num_tactics: int = option(8, "distinct tactics asked of the generator per expansion")
    num_premises: int = option(10, "retrieved premises put in the generator's context")
    premise_bytes: int = option(2048, "byte budget of the retrieved-premise context (ReProver uses 2048-2300)")
    max_expansions: int = option(64, "node expansions per theorem")
    timeout: float = option(60.0, "wall-clock seconds per theorem")
    tactic_timeout: float = option(5.0, "seconds per tactic in Lean")
    decoding: Literal["beam", "sample"] = option("beam", "'hf' candidates: beam search (ReProver) or sampling")
    temperature: float = option(1.0, "sampling temperature ('hf' with decoding = 'sample', and 'vllm')")
    max_new_tokens: int = option(64, "longest tactic the model may generate, in tokens")
    max_input_tokens: int = option(1024, "model input length in tokens (truncated on the left, keeping the goal)")
    knn_neighbours: int = option(32, "'knn': nearest bank steps whose tactics are pooled")
    knn_temperature: float = option(0.05, "'knn': softmax temperature over cosine similarities (kNN-LM)")
    learn_online: bool = option(False, "each worker's 'knn' learns from its own proofs at once (results then depend "
                                "on scheduling); proofs always enter the bank when a run ends")
    workers: int = option(1, "parallel prover processes (0 = sized to the machine)")
    ray_address: str | None = option(None, "Ray cluster to spread proving over ('auto', host:port, or 'local' for a "
                                     "private one); unset = local processes")

    def __post_init__(self) -> None:
        for name in ("num_tactics", "max_expansions", "max_new_tokens", "max_input_tokens", "knn_neighbours"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.timeout <= 0 or self.tactic_timeout <= 0:
            raise ValueError("timeout and tactic_timeout must be positive")
        if self.temperature <= 0 or self.knn_temperature <= 0:
            raise ValueError("temperature and knn_temperature must be positive")
        if self.workers < 0:
            raise ValueError(f"workers must be 0 (auto) or more, got {self.workers}")
        if self.num_premises < 0 or self.premise_bytes < 0:
            raise ValueError("num_premises and premise_bytes must be 0 or more")
