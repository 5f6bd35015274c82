"""GPU host check (run by bench/gpu_check.sh, under 10 minutes): the same prompts through three generators.

1. transformers `generate` (HFGenerator, sampling, on CUDA) — the baseline;
2. vLLM in-process (`vllm.LLM`, one engine for the process, via provers.generators.vllm.EngineBackend);
3. vLLM server mode (`vllm serve` started here on a free port, via ServerBackend).
Prints tactics/s of each and the ratio vLLM / transformers. The model is a small decoder-only model: by default
a tiny LLaMA built from a config (nothing downloaded), or `--model ID_OR_PATH`.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PROMPT_STATES = [f"n m : ℕ\nh : n + {i} = m\n⊢ m - {i} = n" for i in range(32)]


def _rate(generate, n: int) -> tuple[float, int]:
    t0 = time.perf_counter()
    count = sum(len(generate(state, n)) for state in PROMPT_STATES)
    return count / (time.perf_counter() - t0), count


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(url: str, proc: subprocess.Popen, limit: float) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"vllm serve exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/models", timeout=5) as resp:
                json.loads(resp.read())
                return
        except OSError:
            time.sleep(2)
    raise SystemExit(f"vllm serve did not answer within {limit:.0f} s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="decoder-only model (default: a tiny LLaMA built here)")
    ap.add_argument("--n", type=int, default=8, help="tactics asked per prompt")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--gpu-memory-utilization", type=float, default=0.35)
    args = ap.parse_args()

    import torch

    if not torch.cuda.is_available():
        print("no CUDA device: this check needs a GPU host", file=sys.stderr)
        return 2
    from provers.generators.hf import HFGenerator
    from provers.generators.vllm import EngineBackend, ServerBackend, VllmGenerator

    work = Path(tempfile.mkdtemp(prefix="lifelean-gpu-"))
    model = args.model
    if model is None:
        from provers.generators.tiny import build_tiny_model

        model = str(build_tiny_model(work / "tiny-llama", "llama", d_model=256, layers=4, heads=8))
    print(f"model: {model}; {len(PROMPT_STATES)} prompts x n={args.n}, max {args.max_tokens} new tokens")

    hf = HFGenerator.from_pretrained(model, decoding="sample", max_new_tokens=args.max_tokens, device="cuda")
    hf.reset(1)
    hf.generate(PROMPT_STATES[0], args.n)                      # warm-up
    hf_rate, hf_count = _rate(hf.generate, args.n)
    print(f"transformers generate: {hf_rate:8.1f} tactics/s ({hf_count} tactics)")
    del hf
    torch.cuda.empty_cache()

    engine = VllmGenerator(EngineBackend.load(model, max_tokens=args.max_tokens, temperature=1.0,
                                              max_input_tokens=1024,
                                              gpu_memory_utilization=args.gpu_memory_utilization,
                                              max_model_len=2048, enforce_eager=True))
    engine.reset(1)
    engine.generate(PROMPT_STATES[0], args.n)
    eng_rate, eng_count = _rate(engine.generate, args.n)
    print(f"vLLM in-process:       {eng_rate:8.1f} tactics/s ({eng_count} tactics)")
    from provers.generators.vllm import load_engine

    load_engine.cache_clear()
    del engine
    torch.cuda.empty_cache()

    port = _free_port()
    url = f"http://127.0.0.1:{port}/v1"
    server = subprocess.Popen([sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model,
                               "--port", str(port), "--host", "127.0.0.1", "--enforce-eager",
                               "--gpu-memory-utilization", str(args.gpu_memory_utilization),
                               "--max-model-len", "2048"],
                              stdout=open(work / "server.log", "w"), stderr=subprocess.STDOUT)
    try:
        _wait(url, server, 300)
        srv = VllmGenerator(ServerBackend(url, max_tokens=args.max_tokens, temperature=1.0, max_input_tokens=1024))
        srv.reset(1)
        srv.generate(PROMPT_STATES[0], args.n)
        srv_rate, srv_count = _rate(srv.generate, args.n)
        print(f"vLLM server:           {srv_rate:8.1f} tactics/s ({srv_count} tactics)")
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    print(f"ratio vLLM in-process / transformers: {eng_rate / max(hf_rate, 1e-9):.2f}x")
    print(f"ratio vLLM server / transformers:     {srv_rate / max(hf_rate, 1e-9):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
