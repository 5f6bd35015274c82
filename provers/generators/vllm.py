"""vLLM tactic generator: the in-process offline engine (`vllm.LLM`) or an OpenAI-compatible vLLM server.

Both draw `n` samples of a decoder-only model in ReProver's `[GOAL] … [PROOFSTEP]` template from one request and
score each by its cumulative log-probability:
* engine: `LLM.generate(prompts, SamplingParams(n=n, logprobs=0, ...))`; each `RequestOutput.outputs[i]` is a
  `CompletionOutput` with `.text` and `.cumulative_logprob` (logprobs=0 asks for the sampled token's log-prob only);
* server (`vllm serve MODEL`, then `--generator vllm` with `prover.vllm_url = "http://HOST:8000/v1"`): POST
  `{url}/completions` with `n`, `logprobs: 0`, and sum `choices[i].logprobs.token_logprobs`.
vLLM is imported only for the engine path; the server path needs nothing but the standard library.
"""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Protocol, Sequence

from common.errors import InputError
from curriculum.lean_data import Theorem
from provers.generators.base import CAUSAL_TEMPLATE, dedup_best, first_line
from provers.generators.context import PremiseContext

STOP = ["\n[GOAL]", "[PROOFSTEP]"]


class Backend(Protocol):
    def complete(self, prompt: str, n: int, seed: int | None) -> list[tuple[str, float]]: ...


def _engine_logprob(output) -> float:
    """`cumulative_logprob` when vLLM filled it, else the sum of the sampled tokens' log-probs."""
    if getattr(output, "cumulative_logprob", None) is not None:
        return float(output.cumulative_logprob)
    total = 0.0
    for token_id, position in zip(output.token_ids, output.logprobs or []):
        total += float(position[token_id].logprob)
    return total


class EngineBackend:
    """vLLM's offline engine in this process (one model copy per prover worker)."""

    def __init__(self, llm, max_tokens: int = 64, temperature: float = 1.0):
        self.llm = llm
        self.max_tokens = max_tokens
        self.temperature = temperature

    @classmethod
    def load(cls, model: str, max_tokens: int = 64, temperature: float = 1.0, **engine_kwargs) -> "EngineBackend":
        try:
            from vllm import LLM
        except ImportError:
            raise InputError("the in-process vLLM engine needs vLLM on a GPU host: pip install 'lifelean[gpu]'; "
                             "or point prover.vllm_url at a running `vllm serve` server") from None
        return cls(LLM(model=model, **engine_kwargs), max_tokens=max_tokens, temperature=temperature)

    def complete(self, prompt: str, n: int, seed: int | None) -> list[tuple[str, float]]:
        from vllm import SamplingParams

        params = SamplingParams(n=n, temperature=self.temperature, max_tokens=self.max_tokens, logprobs=0,
                                stop=STOP, seed=seed)
        (request,) = self.llm.generate([prompt], params, use_tqdm=False)
        return [(o.text, _engine_logprob(o)) for o in request.outputs]


class ServerBackend:
    """An OpenAI-compatible vLLM server (`vllm serve MODEL --port 8000`), reached at `url` (e.g. …:8000/v1)."""

    def __init__(self, url: str, model: str | None = None, max_tokens: int = 64, temperature: float = 1.0,
                 timeout: float = 120.0):
        self.url = url.rstrip("/")
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.timeout = timeout
        self.model = model or self._served_model()

    def _request(self, path: str, body: dict | None = None) -> dict:
        data = json.dumps(body).encode("utf-8") if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, headers={"Content-Type": "application/json"},
                                     method="POST" if body is not None else "GET")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read().decode("utf-8"))
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")[:300]
            raise InputError(f"vLLM server {self.url}{path}: HTTP {exc.code}: {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise InputError(f"vLLM server {self.url}: unreachable ({exc}); start it with `vllm serve MODEL` "
                             "and set prover.vllm_url to http://HOST:PORT/v1") from None

    def _served_model(self) -> str:
        models = self._request("/models").get("data") or []
        if not models:
            raise InputError(f"vLLM server {self.url} serves no model")
        return models[0]["id"]

    def complete(self, prompt: str, n: int, seed: int | None) -> list[tuple[str, float]]:
        body = {"model": self.model, "prompt": prompt, "n": n, "max_tokens": self.max_tokens,
                "temperature": self.temperature, "logprobs": 0, "stop": STOP}
        if seed is not None:
            body["seed"] = seed
        out = []
        for choice in self._request("/completions", body).get("choices", []):
            lp = (choice.get("logprobs") or {}).get("token_logprobs") or []
            out.append((choice.get("text", ""), float(sum(x for x in lp if x is not None))))
        return out


class VllmGenerator:
    name = "vllm"

    def __init__(self, backend: Backend, context: PremiseContext | None = None):
        self.backend = backend
        self.context = context or PremiseContext()
        self._seed: int | None = None
        self._calls = 0

    def reset(self, seed: int) -> None:
        self._seed, self._calls = seed, 0

    def generate(self, state: str, n: int, theorem: Theorem | None = None) -> list[tuple[str, float]]:
        prompt = CAUSAL_TEMPLATE.format(context=self.context.build(state, theorem))
        seed = None if self._seed is None else (self._seed * 1_000_003 + self._calls) % (2 ** 31)
        self._calls += 1
        return dedup_best(((first_line(text), score) for text, score in self.backend.complete(prompt, n, seed)), n)


def make_vllm_generator(model: str | None, url: str | None, context: PremiseContext | None = None,
                        max_tokens: int = 64, temperature: float = 1.0, engine_kwargs: dict | None = None,
                        ) -> VllmGenerator:
    """A server-backed generator when `url` is set, else the in-process engine on `model`."""
    if url:
        return VllmGenerator(ServerBackend(url, model, max_tokens=max_tokens, temperature=temperature), context)
    if not model:
        raise InputError("--generator vllm needs prover.model (a model id or path) or prover.vllm_url (a server)")
    return VllmGenerator(EngineBackend.load(model, max_tokens=max_tokens, temperature=temperature,
                                            **(engine_kwargs or {})), context)


__all__: Sequence[str] = ["EngineBackend", "ServerBackend", "VllmGenerator", "make_vllm_generator"]
