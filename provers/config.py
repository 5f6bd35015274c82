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
                                            "no Lean needed, not a Lean check) or 'lean' (real Lean, see lean_backend)")
    lean_backend: Literal["auto", "leandojo", "lean-interact"] = option(
        "auto", "with env = 'lean': 'leandojo' (LeanDojo's Dojo on a traced repo; Lean <= 4.18), 'lean-interact' "
        "(the Lean REPL; recent Lean), or 'auto' = the one that supports the repository's Lean version")
    lean_project_dir: str | None = option(None, "with env = 'lean': a local checkout of the repository at its "
                                          "commit (lean-interact reads the theorem's file there); unset = its URL")
    replay_scope: Literal["theorem", "repository"] = option(
        "repository", "replay answers from the theorem's own trace only, or from every recorded step of its repository")
    num_tactics: int = option(8, "distinct tactics asked of the generator per expansion")
    num_premises: int = option(10, "retrieved premises put in the generator's context")
    premise_bytes: int = option(2048, "byte budget of the retrieved-premise context (ReProver uses 2048-2300)")
    max_expansions: int = option(64, "node expansions per theorem")
    timeout: float = option(60.0, "wall-clock seconds per theorem")
    tactic_timeout: float = option(5.0, "seconds per tactic in Lean (a timed-out session is discarded and restarted)")
    startup_timeout: float = option(600.0, "seconds to start Lean on a theorem's file (imports; minutes for Mathlib);"
                                    " not counted in `timeout`")
    decoding: Literal["beam", "sample"] = option("beam", "'hf' candidates: beam search (ReProver) or sampling")
    temperature: float = option(1.0, "sampling temperature ('hf' with decoding = 'sample', and 'vllm'), at most 2")
    max_new_tokens: int = option(64, "longest tactic the model may generate, in tokens (bytes for ByT5: see "
                                 "max_new_bytes)")
    max_input_tokens: int = option(1024, "model input length in tokens (truncated on the left, keeping the goal); "
                                   "for 'vllm' also capped by the model's own length")
    max_new_bytes: int = option(256, "'hf' with a byte-level model (ByT5): longest tactic in bytes")
    max_input_bytes: int = option(2300, "'hf' with a byte-level model (ByT5): input length in bytes (ReProver: "
                                  "premise context 2048-2300 bytes + state)")
    prompt: Literal["auto", "state", "premises"] = option(
        "auto", "'hf'/'vllm' input: 'state' alone, 'premises' (retrieved premises, then the state), or 'auto' "
        "(ReProver's state-only checkpoints get the state; every other model gets premises)")
    vllm_api_key: str | None = option(None, "API key sent to the vLLM server (`vllm serve --api-key`); prefer "
                                      "vllm_api_key_env")
    vllm_api_key_env: str = option("VLLM_API_KEY", "environment variable holding the vLLM server's API key")
    vllm_retries: int = option(4, "retries of a vLLM server request after a 503/429 or a connection error "
                               "(exponential back-off from 1 s)")
    gpu_memory_utilization: float = option(0.9, "in-process vLLM engine: share of the GPU memory it may take")
    tensor_parallel_size: int = option(1, "in-process vLLM engine: GPUs one model is split over")
    max_model_len: int | None = option(None, "in-process vLLM engine: context length (unset = the model's own)")
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
        if self.temperature > 2:
            raise ValueError(f"temperature must be at most 2 (vLLM rejects more), got {self.temperature}")
        if self.startup_timeout <= 0:
            raise ValueError("startup_timeout must be positive")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ValueError(f"gpu_memory_utilization must be in (0, 1], got {self.gpu_memory_utilization}")
        for name in ("tensor_parallel_size", "max_new_bytes", "max_input_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.vllm_retries < 0 or (self.max_model_len is not None and self.max_model_len < 1):
            raise ValueError("vllm_retries must be 0 or more and max_model_len at least 1")
        if self.workers < 0:
            raise ValueError(f"workers must be 0 (auto) or more, got {self.workers}")
        if self.num_premises < 0 or self.premise_bytes < 0:
            raise ValueError("num_premises and premise_bytes must be 0 or more")
