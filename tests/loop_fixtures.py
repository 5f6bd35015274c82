"""A small real stream for loop tests: three pseudo-repositories of the shared sample, and a fast config."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PREFIXES = ("Mathlib/SetTheory", "Mathlib/FieldTheory", "Mathlib/GroupTheory")

FAST_CONFIG = """
seed = 11
[memory]
max_length = 64
[learning]
strategy = ["replay", "distill"]
max_examples = 12
batch_size = 4
[prover]
max_expansions = 6
num_tactics = 4
timeout = 20.0
"""


def small_stream(b4_sample: Path, dest: Path, prefixes: tuple[str, ...] = PREFIXES) -> Path:
    """A LeanDojo export holding only the theorems and premise files under `prefixes`."""
    (dest / "random").mkdir(parents=True, exist_ok=True)
    for split in ("train", "val", "test"):
        recs = json.loads((b4_sample / "random" / f"{split}.json").read_text())
        keep = [r for r in recs if r["file_path"].startswith(prefixes)]
        (dest / "random" / f"{split}.json").write_text(json.dumps(keep))
    lines = [line for line in (b4_sample / "corpus.jsonl").read_text().splitlines()
             if json.loads(line)["path"].startswith(prefixes)]
    (dest / "corpus.jsonl").write_text("\n".join(lines) + "\n")
    return dest


def prepare_workspace(ws: Path) -> None:
    ws.mkdir(parents=True, exist_ok=True)
    (ws / "lifelean.toml").write_text(FAST_CONFIG)


def run_to_end(ws: Path, data: Path, config: str) -> Path:
    """A workspace with `config` whose loop has run over `data` (one repository per top directory)."""
    ws.mkdir(parents=True)
    (ws / "lifelean.toml").write_text(config)
    run(ws, "run", str(data), "--split-by-dir", "2", "--json")
    return ws


def lifelean_cmd(ws: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "agent.cli", "-w", str(ws), *args]


def env() -> dict[str, str]:
    return dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", ANONYMIZED_TELEMETRY="False",
                OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")


def run(ws: Path, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run(lifelean_cmd(ws, *args), cwd=REPO_ROOT, env=env(), capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"lifelean {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-4000:]}")
    return proc


def end_state(ws: Path) -> dict:
    """What must be identical between an interrupted-and-resumed run and a clean one."""
    state = json.loads((ws / "state.json").read_text())
    cells: dict[tuple, dict] = {}
    proofs: dict[tuple, tuple] = {}
    for line in (ws / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec.get("kind") == "eval":
            cells[(rec["step"], rec["repo"])] = {k: rec.get(k) for k in ("recall@1", "recall@10", "mrr", "proof_rate")}
    if (ws / "proofs.jsonl").exists():
        for line in (ws / "proofs.jsonl").read_text().splitlines():
            rec = json.loads(line)
            proofs[(rec["step"], rec["uid"])] = (rec["proved"], tuple(rec["proof"]), rec["checked_by"])
    ckpts = sorted(p.name for p in (ws / "checkpoints").iterdir() if p.is_dir() and p.name.isdigit())
    meta = json.loads((ws / "checkpoints" / ckpts[-1] / "meta.json").read_text())
    return {"stream": stream_keys(state), "steps": {r["key"]: r["phases"] for r in state["repos"]},
            "cells": cells, "proofs": proofs, "weights": meta["encoder_version"]}


def stream_keys(state: dict) -> list[str]:
    """Keys of the started entries in processing order (their permanent step ids)."""
    started = sorted((r for r in state["repos"] if r.get("step") is not None), key=lambda r: r["step"])
    return [r["key"] for r in started]


def entry(state: dict, step: int) -> dict:
    return next(r for r in state["repos"] if r.get("step") == step)


def assert_same_end_state(a: dict, b: dict) -> None:
    assert a["stream"] == b["stream"]
    assert a["steps"] == b["steps"]
    assert a["proofs"] == b["proofs"]
    assert a["cells"].keys() == b["cells"].keys()
    for key, va in a["cells"].items():
        for metric, x in va.items():
            y = b["cells"][key][metric]
            assert (x is None and y is None) or abs(x - y) <= 1e-6, (key, metric, x, y)
    assert a["weights"] == b["weights"]


def start(ws: Path, *args: str, preexec_fn=None) -> subprocess.Popen:
    return subprocess.Popen(lifelean_cmd(ws, *args), cwd=REPO_ROOT, env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=preexec_fn)


def done_steps(ws: Path) -> list[tuple[str, str]]:
    try:
        state = json.loads((ws / "state.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return []
    return [(r["key"], s) for r in state.get("repos", []) for s, v in r.get("phases", {}).items() if v == "done"]


def kill_after(proc: subprocess.Popen, ws: Path, n_done: int, delay: float, timeout: float = 600) -> bool:
    """SIGKILL `proc` `delay` seconds after `n_done` steps are recorded; False if it finished first."""
    import signal
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if len(done_steps(ws)) >= n_done:
            time.sleep(delay)
            if proc.poll() is not None:
                return False
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("timed out waiting for steps")
