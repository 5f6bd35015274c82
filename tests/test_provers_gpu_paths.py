"""The paths a GPU user runs, tested here at their outer boundary: hf lengths and prompt shape, vLLM truncation,
engine options and reuse, server retries / API key / served model, temperature, worker count, Ray GPUs and
shared paths, encoders loaded as their checkpoints say, and the extras resolving (slow tier)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from common.errors import InputError
from provers.config import ProverConfig
from provers.generators.context import PremiseContext
from tests.test_provers_generators import ListStore

REPO_ROOT = Path(__file__).resolve().parents[1]


# -- hf ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_t5(tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    from provers.generators.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("t5") / "t5", "t5", d_model=32, layers=1)


def test_hf_byte_level_lengths_are_bytes_and_prompt_follows_the_checkpoint(tiny_t5):
    from provers.generators.hf import HFGenerator, prompt_shape_for

    gen = HFGenerator.from_pretrained(str(tiny_t5), byte_lengths=(2300, 256), max_new_tokens=64,
                                      max_input_tokens=1024)
    assert (gen.max_input_tokens, gen.max_new_tokens) == (2301, 257)      # bytes + </s>, not 64 tokens
    assert gen.model.device.type == ("cuda" if __import__("torch").cuda.is_available() else "cpu")
    assert prompt_shape_for("kaiyuy/leandojo-lean4-tacgen-byt5-small") == "state"
    assert prompt_shape_for("kaiyuy/leandojo-lean4-retriever-tacgen-byt5-small") == "premises"
    assert prompt_shape_for("kaiyuy/leandojo-lean4-tacgen-byt5-small", "premises") == "premises"
    ctx = PremiseContext(ListStore(["Nat.add_zero"]), k=1, budget_bytes=64)
    state_only = HFGenerator(gen.model, gen.tokenizer, True, context=ctx, prompt_shape="state")
    assert state_only.prompt("⊢ n + 0 = n") == "⊢ n + 0 = n"
    with_premises = HFGenerator(gen.model, gen.tokenizer, True, context=ctx)
    assert with_premises.prompt("⊢ n + 0 = n").startswith("<a>Nat.add_zero</a>")


def test_no_process_wide_offline_switch(tiny_t5, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    from memory.embedder import Encoder
    from provers.generators.hf import load_model

    load_model(str(tiny_t5))
    Encoder.load()
    assert "HF_HUB_OFFLINE" not in os.environ and "TRANSFORMERS_OFFLINE" not in os.environ


# -- encoders -----------------------------------------------------------------------------------------------------
def test_t5_retriever_loads_as_its_encoder_stack(tiny_t5):
    from transformers import T5EncoderModel

    from memory.embedder import Encoder

    enc = Encoder.load(str(tiny_t5), max_length=64)
    assert isinstance(enc.model, T5EncoderModel) and enc.pooling == "mean"
    vecs = enc.encode(["⊢ a + b = b + a", "n : ℕ ⊢ n = n"])
    assert vecs.shape == (2, 32) and abs(float((vecs[0] ** 2).sum()) - 1) < 1e-4


def test_sentence_transformers_pooling_config_is_followed(tmp_path, encoder):
    from memory.embedder import Encoder, pooling_of, resolve_encoder_path

    assert pooling_of(resolve_encoder_path("all-MiniLM-L6-v2")) == "mean"
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "modules.json").write_text(json.dumps([{"idx": 1, "name": "1", "path": "1_Pooling",
                                                        "type": "sentence_transformers.models.Pooling"}]))
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True}))
    assert pooling_of(str(tmp_path)) == "cls"
    cls = Encoder(encoder.model, encoder.tokenizer, encoder.name, pooling="cls")
    assert not (cls.encode(["⊢ p"]) == encoder.encode(["⊢ p"])).all()


# -- vLLM ---------------------------------------------------------------------------------------------------------
class _Tok:
    def encode(self, text):
        return list(text.encode("utf-8"))


class _LLM:
    """vllm.LLM's surface used here: get_tokenizer(), llm_engine.model_config.max_model_len, generate()."""

    def __init__(self, max_model_len):
        self.llm_engine = types.SimpleNamespace(model_config=types.SimpleNamespace(max_model_len=max_model_len))
        self.prompts = []

    def get_tokenizer(self):
        return _Tok()

    def generate(self, prompts, params, use_tqdm=True):
        self.prompts.extend(prompts)
        out = types.SimpleNamespace(text="simp", token_ids=[1], cumulative_logprob=-0.5, logprobs=None)
        return [types.SimpleNamespace(outputs=[out])]


def test_engine_prompt_is_cut_on_the_left_to_the_model_length(monkeypatch):
    from provers.generators.vllm import EngineBackend

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(SamplingParams=lambda **kw: kw))
    llm = _LLM(max_model_len=100)
    backend = EngineBackend(llm, max_tokens=20)
    backend.complete("x" * 50, 2, None)
    backend.complete("y" * 200 + "⊢ goal", 2, None)
    assert llm.prompts[0] == "x" * 50
    ids = llm.prompts[1]["prompt_token_ids"]
    assert len(ids) == 80 and bytes(ids).decode().endswith("⊢ goal")     # the goal is kept


def test_one_engine_per_process_with_configured_options(monkeypatch):
    from provers.generators import vllm as V

    made = []
    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(
        LLM=lambda **kw: made.append(kw) or _LLM(4096), SamplingParams=lambda **kw: kw))
    V.load_engine.cache_clear()
    cfg = ProverConfig(generator="vllm", model="m", gpu_memory_utilization=0.4, tensor_parallel_size=2,
                       max_model_len=2048)
    for _ in range(3):                      # three prove steps / evaluation rows
        V.from_config(cfg)
    V.load_engine.cache_clear()
    assert made == [{"model": "m", "gpu_memory_utilization": 0.4, "tensor_parallel_size": 2, "max_model_len": 2048}]


def test_temperature_above_two_is_refused():
    with pytest.raises(ValueError, match="at most 2"):
        ProverConfig(temperature=2.5)


class _Flaky(BaseHTTPRequestHandler):
    fails = 0
    seen: list = []

    def log_message(self, *args):
        pass

    def _send(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        _Flaky.seen.append(("GET", self.headers.get("Authorization")))
        self._send(200, {"data": [{"id": "served-model", "max_model_len": 128}]})

    def do_POST(self):
        req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Flaky.seen.append(("POST", self.headers.get("Authorization"), req))
        if _Flaky.fails > 0:
            _Flaky.fails -= 1
            return self._send(503, {"error": "busy"})
        self._send(200, {"choices": [{"text": "simp", "logprobs": {"token_logprobs": [-0.25]}}]})


@pytest.fixture
def flaky_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Flaky.fails, _Flaky.seen = 0, []
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def test_server_retries_sends_the_key_truncates_and_uses_the_served_model(flaky_server, monkeypatch):
    from provers.generators.vllm import ServerBackend, from_config

    monkeypatch.setenv("MY_VLLM_KEY", "sekrit")
    cfg = ProverConfig(generator="vllm", model="not-served", vllm_url=flaky_server, vllm_api_key_env="MY_VLLM_KEY",
                       max_new_tokens=28)
    with pytest.warns(UserWarning, match="served-model"):
        gen = from_config(cfg)
    backend = gen.backend
    backend._sleep = lambda s: None
    _Flaky.fails = 2
    assert backend.complete("prompt", 1, None) == [("simp", -0.25)]
    posts = [s for s in _Flaky.seen if s[0] == "POST"]
    assert len(posts) == 3 and all(p[1] == "Bearer sekrit" for p in posts)
    assert posts[-1][2]["model"] == "served-model" and posts[-1][2]["truncate_prompt_tokens"] == 100
    _Flaky.fails = 99
    slept = []
    quick = ServerBackend(flaky_server, retries=2, sleep=slept.append)
    with pytest.raises(InputError, match="HTTP 503"):
        quick.complete("p", 1, None)
    assert slept == [1.0, 2.0]


# -- pools ----------------------------------------------------------------------------------------------------------
def test_in_process_engine_forces_one_local_worker(monkeypatch):
    from provers import pool
    from provers.factory import GeneratorSpec

    used = []

    class Worker:
        def __init__(self, spec):
            used.append("built")

        def prove(self, repo, thm):
            return thm

    monkeypatch.setattr(pool, "ProverWorker", Worker)
    monkeypatch.setattr(pool, "_run_processes", lambda *a: pytest.fail("must not start a process pool"))
    spec = pool.WorkerSpec(GeneratorSpec(ProverConfig(generator="vllm", model="m", workers=4)))
    with pytest.warns(UserWarning, match="1 worker instead of 3"):
        out = list(pool.prove_many([("r", "a"), ("r", "b"), ("r", "c")], spec))
    assert out == ["a", "b", "c"] and used == ["built"]


def test_ray_actors_ask_for_gpus_and_check_shared_paths(tmp_path):
    from provers.factory import GeneratorSpec
    from provers.pool import WorkerSpec, gpus_per_actor, missing_paths

    assert gpus_per_actor(ProverConfig(generator="vllm", model="m", tensor_parallel_size=2), 4) == 2
    assert gpus_per_actor(ProverConfig(generator="vllm", model="m", vllm_url="http://x/v1"), 4) == 0
    assert gpus_per_actor(ProverConfig(generator="hf", model="m"), 1) == 1
    assert gpus_per_actor(ProverConfig(), 8) == 0
    with pytest.raises(InputError, match="needs 1 GPU"):
        gpus_per_actor(ProverConfig(generator="vllm", model="m"), 0)
    spec = WorkerSpec(GeneratorSpec(ProverConfig(), bank_path=tmp_path / "bank", store_path=tmp_path))
    problem = missing_paths(spec)
    assert problem is not None and str(tmp_path / "bank") in problem and "filesystem" in problem
    (tmp_path / "bank").mkdir()
    assert missing_paths(spec) is None


# -- extras (slow: asks the package index) ------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("extra", ["gpu", "lean"])
def test_extras_resolve(extra):
    """`pip install --dry-run '.[gpu]'` / `'.[lean]'` resolve (vllm 0.32.0 pins transformers <5.20, torch 2.13)."""
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-input",
                           "-c", str(REPO_ROOT / "constraints.txt"), f".[{extra}]"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    text = proc.stdout + proc.stderr
    if proc.returncode != 0 and any(s in text for s in ("NewConnectionError", "Temporary failure in name",
                                                        "Network is unreachable", "No matching distribution")):
        pytest.skip(f"no package index reachable: {text.strip().splitlines()[-1]}")
    assert proc.returncode == 0, text[-2000:]
    assert "Would install" in text
    would = text.split("Would install", 1)[1].split()
    assert not any(w.startswith("torch-") for w in would)          # torch stays 2.13.0
