"""vLLM tactic generator: the in-process offline engine (`vllm.LLM`) or an OpenAI-compatible vLLM server.

Both draw `n` samples of a decoder-only model in ReProver's `[GOAL] … [PROOFSTEP]` template from one request and
score each by its cumulative log-probability:
* engine: `LLM.generate(prompts, SamplingParams(n=n, logprobs=0, ...))`; each `RequestOutput.outputs[i]` is a
  `CompletionOutput` with `.text` and `.cumulative_logprob` (logprobs=0 asks for the sampled token's log-prob only);
* server (`vllm serve MODEL`, then `--generator vllm` with `prover.vllm_url = "http://HOST:8000/v1"`): POST
  `{url}/completions` with `n`, `logprobs: 0`, and sum `choices[i].logprobs.token_logprobs`.
vLLM is imported only for the engine path; the server path needs nothing but the standard library.

Robustness on real hosts:
* prompts are cut on the left (the goal ends them) to `max_input_tokens` and to what the model's length
  leaves after `max_tokens` (engine: its tokenizer; server: vLLM's `truncate_prompt_tokens`);
* one engine per process for the whole run (:func:`load_engine`, an `lru_cache` of size 1: every prove step
  and evaluation row reuses it), with its GPU options from `[prover]`; in-process engines are never shared
  by several local workers on one GPU (see `provers.pool`);
* the server: retries with exponential back-off on 429/502/503/504 and connection errors, an API key
  (`Authorization: Bearer`), and the model the server actually serves when the configured one is absent.
"""
from __future__ import annotations

import functools
import json
import os
import time
import urllib.error
import urllib.request
import warnings
from typing import Any, Callable, Protocol, Sequence

from common.errors import InputError
from curriculum.lean_data import Theorem
from provers.generators.base import CAUSAL_TEMPLATE, dedup_best, first_line
from provers.generators.context import PremiseContext

RETRY_STATUS = (429, 502, 503, 504)

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


@functools.lru_cache(maxsize=1)
def load_engine(model: str, engine_items: tuple[tuple[str, Any], ...] = ()) -> Any:
    """The process's one `vllm.LLM` (documented cache: size 1, keyed by model and engine options).

    Why a cache: the loop builds a generator for every prove step and evaluation row; an engine takes the
    GPU's memory and a minute to load, so a second one would not fit beside the first. A different model
    or option set replaces the cached engine (the old one is released with its last reference).
    """
    try:
        from vllm import LLM
    except ImportError:
        raise InputError("the in-process vLLM engine needs vLLM on a GPU host: pip install 'lifelean[gpu]'; "
                         "or point prover.vllm_url at a running `vllm serve` server") from None
    return LLM(model=model, **dict(engine_items))


def _model_len(llm: Any) -> int | None:
    """The engine's context length (`model_config.max_model_len`), where this vLLM exposes it."""
    for path in (("llm_engine", "model_config"), ("llm_engine", "vllm_config", "model_config")):
        obj = llm
        for attr in path:
            obj = getattr(obj, attr, None)
        value = getattr(obj, "max_model_len", None)
        if isinstance(value, int):
            return value
    return None


class EngineBackend:
    """vLLM's offline engine in this process (one engine per process, see :func:`load_engine`)."""

    def __init__(self, llm, max_tokens: int = 64, temperature: float = 1.0, max_input_tokens: int | None = None):
        self.llm = llm
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.max_input_tokens = max_input_tokens

    @classmethod
    def load(cls, model: str, max_tokens: int = 64, temperature: float = 1.0, max_input_tokens: int | None = None,
             **engine_kwargs) -> "EngineBackend":
        llm = load_engine(model, tuple(sorted(engine_kwargs.items())))
        return cls(llm, max_tokens=max_tokens, temperature=temperature, max_input_tokens=max_input_tokens)

    def prompt_budget(self) -> int | None:
        """Most prompt tokens: `max_input_tokens`, and the model length minus the tokens to generate."""
        limits = [x for x in (self.max_input_tokens,) if x]
        length = _model_len(self.llm)
        if length:
            limits.append(max(1, length - self.max_tokens))
        return min(limits) if limits else None

    def _prompt(self, prompt: str) -> Any:
        """The prompt, or its last `prompt_budget()` token ids (`{"prompt_token_ids": ...}`) when too long."""
        budget = self.prompt_budget()
        get_tokenizer = getattr(self.llm, "get_tokenizer", None)
        if budget is None or get_tokenizer is None:
            return prompt
        ids = get_tokenizer().encode(prompt)
        return prompt if len(ids) <= budget else {"prompt_token_ids": list(ids[-budget:])}

    def complete(self, prompt: str, n: int, seed: int | None) -> list[tuple[str, float]]:
        from vllm import SamplingParams

        params = SamplingParams(n=n, temperature=self.temperature, max_tokens=self.max_tokens, logprobs=0,
                                stop=STOP, seed=seed)
        (request,) = self.llm.generate([self._prompt(prompt)], params, use_tqdm=False)
        return [(o.text, _engine_logprob(o)) for o in request.outputs]


class ServerBackend:
    """An OpenAI-compatible vLLM server (`vllm serve MODEL --port 8000`), reached at `url` (e.g. …:8000/v1)."""

    def __init__(self, url: str, model: str | None = None, max_tokens: int = 64, temperature: float = 1.0,
                 timeout: float = 120.0, api_key: str | None = None, retries: int = 4,
                 max_input_tokens: int | None = None, sleep: Callable[[float], None] = time.sleep):
        self.url = url.rstrip("/")
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.timeout = timeout
        self.api_key = api_key
        self.retries = retries
        self.max_input_tokens = max_input_tokens
        self._sleep = sleep
        self.max_model_len: int | None = None
        self.model = self._pick_model(model)

    def _request(self, path: str, body: dict | None = None) -> dict:
        data = json.dumps(body).encode("utf-8") if body is not None else None
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        delay = 1.0
        for attempt in range(self.retries + 1):
            req = urllib.request.Request(self.url + path, data=data, headers=headers,
                                         method="POST" if body is not None else "GET")
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    return json.loads(resp.read().decode("utf-8"))
            except urllib.error.HTTPError as exc:
                detail = exc.read().decode("utf-8", "replace")[:300]
                if exc.code in RETRY_STATUS and attempt < self.retries:
                    self._sleep(delay)
                    delay *= 2
                    continue
                hint = "; set prover.vllm_api_key_env to the variable holding its key" if exc.code == 401 else ""
                raise InputError(f"vLLM server {self.url}{path}: HTTP {exc.code}: {detail}{hint}") from None
            except (urllib.error.URLError, OSError) as exc:
                if attempt < self.retries:
                    self._sleep(delay)
                    delay *= 2
                    continue
                raise InputError(f"vLLM server {self.url}: unreachable ({exc}) after {self.retries + 1} tries; "
                                 "start it with `vllm serve MODEL` and set prover.vllm_url to http://HOST:PORT/v1"
                                 ) from None
        raise AssertionError("unreachable")

    def _pick_model(self, configured: str | None) -> str:
        """The configured model if the server serves it, else the one it serves (said aloud)."""
        models = self._request("/models").get("data") or []
        if not models:
            raise InputError(f"vLLM server {self.url} serves no model")
        by_id = {m.get("id"): m for m in models}
        chosen = configured if configured in by_id else models[0]["id"]
        if configured and configured not in by_id:
            warnings.warn(f"vLLM server {self.url} does not serve {configured!r}; using the model it serves, "
                          f"{chosen!r}", UserWarning, stacklevel=3)
        length = by_id[chosen].get("max_model_len")
        self.max_model_len = length if isinstance(length, int) else None
        return chosen

    def prompt_budget(self) -> int | None:
        limits = [x for x in (self.max_input_tokens,) if x]
        if self.max_model_len:
            limits.append(max(1, self.max_model_len - self.max_tokens))
        return min(limits) if limits else None

    def complete(self, prompt: str, n: int, seed: int | None) -> list[tuple[str, float]]:
        body = {"model": self.model, "prompt": prompt, "n": n, "max_tokens": self.max_tokens,
                "temperature": self.temperature, "logprobs": 0, "stop": STOP}
        budget = self.prompt_budget()
        if budget is not None:
            body["truncate_prompt_tokens"] = budget   # vLLM keeps the last `budget` tokens (left truncation)
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


def make_vllm_generator(model: Any, url: str | None = None, context: PremiseContext | None = None,
                        max_tokens: int = 64, temperature: float = 1.0, engine_kwargs: dict | None = None,
                        api_key: str | None = None, retries: int = 4, max_input_tokens: int | None = None,
                        ) -> VllmGenerator:
    """A server-backed generator when `url` is set, else the in-process engine on `model`.

    `model` may also be a `ProverConfig`: then every setting comes from it (see :func:`from_config`).
    """
    if hasattr(model, "vllm_url"):
        return from_config(model, context if context is not None else url)  # type: ignore[arg-type]
    if temperature > 2:
        raise InputError(f"vLLM temperature must be at most 2, got {temperature}")
    if url:
        return VllmGenerator(ServerBackend(url, model, max_tokens=max_tokens, temperature=temperature,
                                           api_key=api_key, retries=retries, max_input_tokens=max_input_tokens),
                             context)
    if not model:
        raise InputError("--generator vllm needs prover.model (a model id or path) or prover.vllm_url (a server)")
    return VllmGenerator(EngineBackend.load(model, max_tokens=max_tokens, temperature=temperature,
                                            max_input_tokens=max_input_tokens, **(engine_kwargs or {})), context)


def engine_options(cfg: Any) -> dict[str, Any]:
    """The in-process engine's options from `[prover]`: GPU memory share, tensor parallelism, model length."""
    opts: dict[str, Any] = {"gpu_memory_utilization": cfg.gpu_memory_utilization,
                            "tensor_parallel_size": cfg.tensor_parallel_size}
    if cfg.max_model_len:
        opts["max_model_len"] = cfg.max_model_len
    return opts


def from_config(cfg: Any, context: PremiseContext | None = None) -> VllmGenerator:
    """The vLLM generator `[prover]` describes (server when `vllm_url` is set, else the process's engine)."""
    api_key = cfg.vllm_api_key or os.environ.get(cfg.vllm_api_key_env) or None
    return make_vllm_generator(cfg.model, cfg.vllm_url, context, max_tokens=cfg.max_new_tokens,
                               temperature=cfg.temperature, engine_kwargs=engine_options(cfg), api_key=api_key,
                               retries=cfg.vllm_retries, max_input_tokens=cfg.max_input_tokens)


__all__: Sequence[str] = ["EngineBackend", "ServerBackend", "VllmGenerator", "engine_options", "from_config",
                          "load_engine", "make_vllm_generator"]
