"""Generators: retrieval-augmented context, kNN over a real memory bank, tiny real HF models, vLLM boundaries."""
from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from curriculum.lean_data import Pos, Theorem
from provers.generators.base import dedup_best
from provers.generators.context import PremiseContext, pack_premises, serialize_premise


@dataclass(frozen=True)
class P:
    full_name: str
    code: str = ""


def test_pack_premises_ranks_nearest_state_and_respects_budget():
    ps = [P("best"), P("second"), P("x" * 100), P("third")]
    text = pack_premises("⊢ goal", ps, budget_bytes=45)
    assert text.endswith("<a>best</a>\n\n⊢ goal")                 # the top premise sits right before the state
    assert text.index("<a>third</a>") < text.index("<a>second</a>") < text.index("<a>best</a>")
    assert "xxx" not in text                                       # too big: skipped, a later one still fits
    assert len(text.encode()) - len("⊢ goal".encode()) <= 45
    assert pack_premises("⊢ g", ps, 0) == "⊢ g"
    assert serialize_premise("Nat.add_comm", "theorem Nat.add_comm : a + b = b + a") == \
        "theorem <a>Nat.add_comm</a> : a + b = b + a"


class ListStore:
    """A premise store answering a fixed ranking (records what it was asked); the real store is tested by memory."""

    def __init__(self, names):
        self.names, self.asked = names, []

    def retrieve(self, state, k, repos=None, accessible=None):
        self.asked.append((state, k, accessible))
        return [P(n) for n in self.names if accessible is None or n in accessible][:k]


def test_context_filters_by_accessibility_and_caches():
    store = ListStore(["a", "b", "c"])
    thm = Theorem("u", "c", "F.lean", "T", Pos(1, 1), Pos(2, 1))
    ctx = PremiseContext(store, k=2, budget_bytes=100, accessible=lambda t: {"b", "c"})
    assert ctx.build("⊢ s", thm) == "<a>c</a>\n\n<a>b</a>\n\n⊢ s"
    ctx.build("⊢ s", thm)
    assert len(store.asked) == 1 and store.asked[0][1] == 2
    assert PremiseContext(None).build("⊢ s") == "⊢ s"


def test_dedup_best_keeps_best_score_and_order():
    out = dedup_best([(" simp ", -2.0), ("simp", -1.0), ("", 0.0), ("ring", -1.0), ("omega", -5.0)], 2)
    assert out == [("ring", -1.0), ("simp", -1.0)]


# -- kNN over the real bank and encoder ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def knn_bank(encoder, tmp_path_factory):
    from memory.bank import BankItem, MemoryBank

    bank = MemoryBank(tmp_path_factory.mktemp("bank"), encoder)
    bank.add([
        BankItem("step", "R", "t1", "n : ℕ\n⊢ n + 0 = n", "simp", "no goals", premises=("Nat.add_zero",)),
        BankItem("step", "R", "t2", "n : ℕ\n⊢ n + 0 = n", "rw [Nat.add_zero]", "no goals", premises=("Nat.add_zero",)),
        BankItem("step", "R", "t3", "a b : ℕ\n⊢ a + b = b + a", "exact Nat.add_comm a b", "no goals",
                 premises=("Nat.add_comm",)),
        BankItem("step", "S", "t4", "s : Set α\n⊢ s ⊆ s", "exact subset_rfl", "no goals"),
    ])
    return bank


def test_knn_ranks_nearest_tactics_as_log_probs(knn_bank, encoder):
    from provers.generators.knn import KnnGenerator

    gen = KnnGenerator(knn_bank, encoder, k=8)
    out = gen.generate("a b : ℕ\n⊢ a + b = b + a", 3)
    assert out[0][0] == "exact Nat.add_comm a b"
    assert len(out) == 3 and len({t for t, _ in out}) == 3
    assert all(s <= 0 for _, s in out) and out[0][1] >= out[1][1] >= out[2][1]
    assert math.isclose(sum(math.exp(s) for _, s in gen.generate("a b : ℕ\n⊢ a + b = b + a", 10)), 1.0, rel_tol=1e-6)
    only_s = KnnGenerator(knn_bank, encoder, repos=["S"]).generate("n : ℕ\n⊢ n + 0 = n", 5)
    assert [t for t, _ in only_s] == ["exact subset_rfl"]
    assert KnnGenerator(knn_bank, encoder, repos=[]).generate("⊢ x", 5) == []


def test_knn_premise_retrieval_reranks(knn_bank, encoder):
    from provers.generators.knn import KnnGenerator

    plain = KnnGenerator(knn_bank, encoder, temperature=1.0).generate("n : ℕ\n⊢ n + 0 = n", 2)
    ctx = PremiseContext(ListStore(["Nat.add_zero"]), k=1)
    boosted = KnnGenerator(knn_bank, encoder, ctx, temperature=1.0, premise_weight=5.0).generate(
        "n : ℕ\n⊢ n + 0 = n", 4)
    assert {t for t, _ in boosted[:2]} == {"simp", "rw [Nat.add_zero]"}
    assert boosted[0][1] > plain[0][1]       # mass moved to tactics whose premises were retrieved


def test_knn_learns_online(encoder):
    from provers.generators.knn import KnnGenerator

    gen = KnnGenerator(None, encoder)
    assert gen.generate("⊢ True", 3) == []
    assert gen.learn([("⊢ True", "trivial", ()), ("⊢ 1 = 1", "rfl", ())]) == 2
    assert gen.generate("⊢ True", 3)[0][0] == "trivial"


# -- transformers: tiny real models ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    from provers.generators.tiny import build_tiny_model

    root = tmp_path_factory.mktemp("tiny")
    return {kind: build_tiny_model(root / kind, kind, d_model=32, layers=1) for kind in ("t5", "llama")}


@pytest.mark.parametrize("kind", ["t5", "llama"])
def test_hf_generator_learns_a_tactic_and_returns_distinct_scored_candidates(tiny_models, kind):
    from provers.generators.hf import HFGenerator
    from provers.generators.tiny import fit

    gen = HFGenerator.from_pretrained(str(tiny_models[kind]), max_new_tokens=12)
    assert gen.seq2seq == (kind == "t5")
    pairs = [("n : ℕ\n⊢ n + 0 = n", "simp"), ("⊢ True", "trivial")] * 8
    losses = fit(gen.model, gen.tokenizer, pairs, gen.seq2seq, epochs=25, lr=1e-2, batch_size=16)
    assert losses[-1] < losses[0] / 3
    beams = gen.generate("n : ℕ\n⊢ n + 0 = n", 4)
    assert beams[0][0] == "simp" and len({t for t, _ in beams}) == len(beams) <= 4
    assert all(s <= 0 for _, s in beams) and beams == sorted(beams, key=lambda x: (-x[1], x[0]))
    gen.decoding = "sample"
    gen.reset(7)
    first = gen.generate("⊢ True", 4)
    gen.reset(7)
    assert gen.generate("⊢ True", 4) == first                      # seeded: reproducible per theorem
    assert all(s <= 0 for _, s in first) and len({t for t, _ in first}) == len(first)


def test_hf_prompt_is_retrieval_augmented(tiny_models):
    from provers.generators.hf import HFGenerator

    ctx = PremiseContext(ListStore(["Nat.add_zero"]), k=1, budget_bytes=64)
    causal = HFGenerator.from_pretrained(str(tiny_models["llama"]), context=ctx)
    assert causal.prompt("⊢ n + 0 = n") == "[GOAL]\n<a>Nat.add_zero</a>\n\n⊢ n + 0 = n\n[PROOFSTEP]\n"


# -- vLLM: fake engine object, real HTTP server ---------------------------------------------------------------
@dataclass
class _Lp:
    logprob: float


@dataclass
class _Completion:   # vllm.outputs.CompletionOutput's fields used here
    index: int
    text: str
    token_ids: list
    cumulative_logprob: float | None
    logprobs: list | None


@dataclass
class _Request:      # vllm.outputs.RequestOutput
    outputs: list


class FakeLLM:
    """Stands in for vllm.LLM at the engine boundary: generate(prompts, SamplingParams) -> [RequestOutput]."""

    def __init__(self):
        self.calls = []

    def generate(self, prompts, params, use_tqdm=True):
        self.calls.append((prompts, params))
        outs = [_Completion(0, " simp\n[GOAL]\nx", [5], -0.5, None), _Completion(1, "ring", [6, 7], None,
                [{6: _Lp(-1.0)}, {7: _Lp(-0.25)}]), _Completion(2, "simp", [5], -0.7, None)]
        return [_Request(outs)]


def test_vllm_engine_backend_scores_and_dedups(monkeypatch):
    import sys
    import types

    from provers.generators.vllm import EngineBackend, VllmGenerator

    fake_vllm = types.ModuleType("vllm")
    fake_vllm.SamplingParams = lambda **kw: kw            # records the keyword API we call
    monkeypatch.setitem(sys.modules, "vllm", fake_vllm)
    llm = FakeLLM()
    gen = VllmGenerator(EngineBackend(llm, max_tokens=32), PremiseContext(ListStore(["L"]), k=1))
    gen.reset(11)
    out = gen.generate("⊢ a = a", 4)
    assert out == [("simp", -0.5), ("ring", -1.25)]
    prompts, params = llm.calls[0]
    assert prompts == ["[GOAL]\n<a>L</a>\n\n⊢ a = a\n[PROOFSTEP]\n"]
    assert params["n"] == 4 and params["logprobs"] == 0 and params["max_tokens"] == 32 and params["seed"] is not None


class _Handler(BaseHTTPRequestHandler):
    requests: list = []

    def log_message(self, *args):
        pass

    def _send(self, obj):
        body = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        assert self.path == "/v1/models"
        self._send({"object": "list", "data": [{"id": "tiny-tacgen", "object": "model"}]})

    def do_POST(self):
        assert self.path == "/v1/completions"
        req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Handler.requests.append(req)
        texts = ["simp", "norm_num", "simp", "linarith"][: req["n"]]
        lps = [[-0.1, -0.2], [-2.0], [-0.1, -0.9], [-1.0, -1.0]]
        self._send({"id": "cmpl-1", "object": "text_completion", "model": req["model"], "choices": [
            {"index": i, "text": t, "finish_reason": "stop",
             "logprobs": {"tokens": list(t), "token_logprobs": lps[i], "top_logprobs": None, "text_offset": []}}
            for i, t in enumerate(texts)]})


@pytest.fixture
def vllm_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Handler.requests = []
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def test_vllm_server_backend_over_http(vllm_server):
    from provers.generators.vllm import make_vllm_generator

    gen = make_vllm_generator(None, vllm_server, max_tokens=48)
    gen.reset(3)
    out = gen.generate("⊢ 2 + 2 = 4", 4)
    assert [t for t, _ in out] == ["simp", "linarith", "norm_num"]
    assert out[0][1] == pytest.approx(-0.3)
    req = _Handler.requests[0]
    assert req["model"] == "tiny-tacgen" and req["n"] == 4 and req["logprobs"] == 0 and req["max_tokens"] == 48
    assert req["prompt"].startswith("[GOAL]\n⊢ 2 + 2 = 4") and "seed" in req


def test_vllm_unreachable_server_is_a_user_error():
    from common.errors import InputError
    from provers.generators.vllm import ServerBackend

    with pytest.raises(InputError, match="vllm serve"):
        ServerBackend("http://127.0.0.1:9/v1", timeout=2, retries=0)
