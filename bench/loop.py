"""Where the time of the lifelong loop goes, on the bundled example.

Runs `lifelean run` on ../shared/data/leandojo_b4_sample (--split-by-dir 2) in a fresh workspace as a
real subprocess, then prints: wall seconds per step type (from the loop's own timing records) with
their share, peak resident memory of the run and how much of it each step type raised (the records carry
the process's peak after each step), and the cost of resuming: one finished step is marked
undone and `lifelean resume` is timed; its wall time minus the step's own time is the fixed cost of a
restart (loading state, models, the store), shown next to the median step size.

    .venv/bin/python bench/loop.py [--data DIR] [--keep]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def lifelean(ws: Path, *args: str) -> tuple[float, subprocess.CompletedProcess]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", ANONYMIZED_TELEMETRY="False")
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "agent.cli", "-w", str(ws), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"lifelean {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - start, proc


def timings(ws: Path) -> list[dict]:
    out = []
    for line in (ws / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec.get("kind") == "timing":
            out.append(rec)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "leandojo_b4_sample"))
    parser.add_argument("--keep", action="store_true", help="keep the workspace and print its path")
    args = parser.parse_args()
    ws = Path(tempfile.mkdtemp(prefix="lifelean-bench-")) / "ws"

    wall, _ = lifelean(ws, "run", args.data, "--split-by-dir", "2", "--json")
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    recs = timings(ws)
    per_phase: dict[str, list[float]] = defaultdict(list)
    for r in recs:
        per_phase[r["phase"]].append(r["seconds"])
    total = sum(sum(v) for v in per_phase.values())
    print(f"full run: {wall:.1f} s wall, {total:.1f} s inside steps, peak RSS {peak_mb:.0f} MiB\n")
    # Which step type raised the peak: each timing record carries the process's peak RSS after the step.
    raised: dict[str, float] = defaultdict(float)
    top: dict[str, float] = defaultdict(float)
    previous = 0.0
    for r in recs:
        peak = r.get("peak_rss_mb") or previous
        raised[r["phase"]] += max(peak - previous, 0.0)
        top[r["phase"]] = max(top[r["phase"]], peak)
        previous = max(previous, peak)
    print(f"{'step':<10} {'count':>5} {'total s':>9} {'share':>7} {'median s':>9} {'max s':>7} "
          f"{'peak MB':>8} {'raised MB':>9}")
    for phase in ("baseline", "index", "learn", "prove", "bank", "evaluate"):
        v = per_phase.get(phase, [])
        if v:
            print(f"{phase:<10} {len(v):>5} {sum(v):>9.2f} {sum(v) / total:>7.1%} {statistics.median(v):>9.3f} "
                  f"{max(v):>7.2f} {top[phase]:>8.0f} {raised[phase]:>9.0f}")

    # Cost of resuming: redo the last evaluate step and subtract its own time.
    state_path = ws / "state.json"
    state = json.loads(state_path.read_text())
    last = max((r for r in state["repos"] if r.get("step") is not None), key=lambda r: r["step"])
    last["phases"].pop("evaluate", None)
    state_path.write_text(json.dumps(state))
    before = len(timings(ws))
    resume_wall, _ = lifelean(ws, "resume", "--json")
    redo = [r for r in timings(ws)[before:] if r["phase"] == "evaluate"]
    step_s = redo[0]["seconds"] if redo else float("nan")
    overhead = resume_wall - step_s
    all_steps = [r["seconds"] for r in recs if r["phase"] != "baseline"]
    med = statistics.median(all_steps)
    print(f"\nresume: {resume_wall:.2f} s wall for one {step_s:.2f} s step -> restart overhead {overhead:.2f} s")
    print(f"median step {med:.3f} s; overhead / median step = {overhead / med:.1f}x; "
          f"overhead / full run = {overhead / wall:.1%}")
    if args.keep:
        print(f"workspace kept at {ws}")
    else:
        shutil.rmtree(ws.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
