"""vLLM for real (`-m gpu`): a tiny LLaMA built from a config with a byte-level tokenizer, served by `vllm.LLM`.

Self-contained: nothing is downloaded; skipped without CUDA or vLLM.
"""
from __future__ import annotations

import math

import pytest

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    torch = pytest.importorskip("torch")
    pytest.importorskip("vllm")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from provers.generators.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "llama", "llama", d_model=64, layers=2, heads=4)


def test_vllm_engine_generates_distinct_scored_tactics(tiny_llama):
    from provers.generators.vllm import EngineBackend, VllmGenerator

    backend = EngineBackend.load(str(tiny_llama), max_tokens=16, temperature=1.0, gpu_memory_utilization=0.2,
                                 max_model_len=1024, enforce_eager=True)
    gen = VllmGenerator(backend)
    gen.reset(5)
    out = gen.generate("n : ℕ\n⊢ n + 0 = n", 8)
    assert 1 <= len(out) <= 8 and len({t for t, _ in out}) == len(out)
    assert all(math.isfinite(s) and s <= 0 for _, s in out)
    assert [s for _, s in out] == sorted((s for _, s in out), reverse=True)
    raw = backend.complete("[GOAL]\n⊢ True\n[PROOFSTEP]\n", 4, seed=1)
    assert len(raw) == 4 and all(s <= 0 for _, s in raw)
    assert backend.complete("[GOAL]\n⊢ True\n[PROOFSTEP]\n", 4, seed=1) == raw    # seeded sampling reproduces
