"""`reports/index.html`: one self-contained page about a run (plots embedded as data URIs).

The lifelong metrics shown are :func:`agent.run_summary.workspace_metrics` verbatim — the same numbers
`status --json` and `metrics --json` print — and are also embedded as JSON in the page
(``<script type="application/json" id="lifelean-metrics">``) so a script can compare them.
Files are written atomically; the PNGs first and index.html last, so a page never links a missing plot.
"""
from __future__ import annotations

import base64
import html
import json
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from agent import plots
from agent.run_summary import metrics_of, proof_records, proofs_per_step, read_matrices
from agent.workspace import Workspace
from common.atomic import atomic_write_bytes, atomic_write_text

MAX_PROOF_ROWS = 2000
METRIC_ROWS = (
    ("acc", "ACC — mean of the last row (Lopez-Paz & Ranzato 2017)"),
    ("bwt", "BWT — mean A[T-1][j] − A[j][j] (Lopez-Paz & Ranzato 2017)"),
    ("fwt", "FWT — mean A[j-1][j] − b[j] (Lopez-Paz & Ranzato 2017)"),
    ("forgetting", "Average forgetting, max over all rows i < T-1 (Chaudhry et al. 2018)"),
    ("forgetting_seen", "Average forgetting, max over rows j <= i < T-1 only"),
    ("plasticity", "Plasticity — mean of the diagonal"),
    ("incremental_acc", "Average incremental accuracy (Rebuffi et al. 2017)"),
    ("dr_acc", "ACC over the lower triangle (Díaz-Rodríguez et al. 2018)"),
    ("expanded_bwt", "Expanded BWT (Díaz-Rodríguez et al. 2018; LeanAgent)"),
    ("dr_fwt", "FWT over the upper triangle (Díaz-Rodríguez et al. 2018)"),
    ("wf5", "WF5 windowed forgetting (LeanAgent)"),
    ("wp5", "WP5 windowed plasticity (LeanAgent)"),
    ("fm", "FM forgetting measure (LeanAgent)"),
    ("ip", "IP incremental plasticity (LeanAgent)"),
    ("cfr", "CFR forgetting resilience (LeanAgent)"),
)


@dataclass(frozen=True)
class Report:
    path: Path
    plots: list[Path]

    def to_json(self) -> dict[str, Any]:
        return {"report": str(self.path), "plots": [str(p) for p in self.plots]}


def checked_label(checked_by: str | None) -> str:
    """How a found proof was checked, in words that do not overstate it (replay is not Lean)."""
    if checked_by == "lean":
        return "checked by Lean"
    if checked_by == "replay":
        return "checked by replay (recorded Lean trace)"
    return "not checked" if checked_by is None else f"not checked by Lean ({checked_by})"


def difficulty_rows(repos: Sequence[Any]) -> list[dict[str, Any]]:
    """Per repository: theorems by LeanAgent difficulty (S = traced tactics; thresholds p33/p67 of e^S
    over all repositories, curriculum/difficulty.py), with sorry and unrated (term-mode) kept apart."""
    from curriculum.difficulty import compute_thresholds, difficulty_steps

    th = compute_thresholds(repos)
    rows = []
    for repo in repos:
        row = {"key": repo.key, "name": repo.name, "theorems": len(repo.theorems),
               "easy": 0, "medium": 0, "hard": 0, "sorry": 0, "unrated": 0}
        for t in repo.theorems:
            s = difficulty_steps(t)
            if s is None:
                row["unrated"] += 1
            elif math.isinf(s):
                row["sorry"] += 1
            elif s <= th.p33_steps:
                row["easy"] += 1
            elif s <= th.p67_steps:
                row["medium"] += 1
            else:
                row["hard"] += 1
        rows.append(row)
    return rows


def _num(v: Any) -> str:
    return "—" if v is None else html.escape(json.dumps(v))


def _metrics_table(m: dict[str, Any]) -> str:
    scores = [s for s in ("recall@10", "proof_rate")]
    head = "".join(f"<th>{html.escape(s)}</th>" for s in scores)
    body = []
    for key, label in METRIC_ROWS:
        if not any(isinstance(m.get(s), dict) and key in m[s] for s in scores):
            continue
        cells = "".join(f"<td class='n'>{_num((m.get(s) or {}).get(key))}</td>" for s in scores)
        body.append(f"<tr><th>{html.escape(label)} <code>{key}</code></th>{cells}</tr>")
    return f"<table><tr><th>metric</th>{head}</tr>{''.join(body)}</table>"


def _proofs_table(records: list[dict[str, Any]], names: dict[str, str]) -> str:
    proved = [r for r in records if r.get("proved")]
    if not proved:
        return "<p>No proofs found yet.</p>"
    rows = []
    for r in proved[:MAX_PROOF_ROWS]:
        proof = "\n".join(str(t) for t in r.get("proof") or [])
        rows.append(
            "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in (
                "—" if r.get("step") is None else r.get("step"), r.get("purpose", "prove"),
                names.get(r.get("repo"), r.get("repo")), r.get("theorem"), r.get("file_path", "")))
            + f"<td>{html.escape(checked_label(r.get('checked_by')))}</td>"
            + f"<td><pre>{html.escape(proof)}</pre></td>"
            + f"<td class='n'>{html.escape(str(r.get('expansions', '')))}</td>"
            + f"<td class='n'>{_num(r.get('seconds'))}</td></tr>")
    more = (f"<p>Showing the first {MAX_PROOF_ROWS} of {len(proved)} proofs; all are in proofs.jsonl.</p>"
            if len(proved) > MAX_PROOF_ROWS else f"<p>{len(proved)} proof(s) found.</p>")
    return (more + "<table><tr><th>step</th><th>purpose</th><th>repository</th><th>theorem</th><th>file</th>"
            "<th>checked by</th><th>proof</th><th>expansions</th><th>seconds</th></tr>" + "".join(rows) + "</table>")


CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ddd;padding:4px 8px;text-align:left;
vertical-align:top}td.n{text-align:right;font-variant-numeric:tabular-nums}pre{margin:0;font-size:85%}
img{max-width:100%;display:block;margin:1em 0}code{color:#555}"""


def _page(title: str, sections: list[tuple[str, str]], metrics: dict[str, Any]) -> str:
    data = json.dumps(metrics, ensure_ascii=False).replace("</", "<\\/")
    body = "".join(f"<h2>{html.escape(h)}</h2>\n{content}\n" for h, content in sections)
    return (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>\n{body}"
            f"<script type='application/json' id='lifelean-metrics'>{data}</script></body></html>\n")


def write_report(ws: Workspace) -> Report:
    """Write the PNGs and `reports/index.html` of the workspace's run; return their paths."""
    state = ws.load_state()
    run = read_matrices(ws, state)
    metrics = metrics_of(run)
    records = proof_records(ws)
    per_step = proofs_per_step(records)
    order = list((state.get("curriculum") or {}).get("order") or [])
    repos = ws.load_repositories(state)
    repos.sort(key=lambda r: order.index(r.key) if r.key in order else len(order))
    diff = difficulty_rows(repos)
    labels = [run.names[k] for k in run.repos]

    images = {
        "accuracy_recall10.png": plots.heatmap(run.matrices["recall@10"], labels, "Recall@10 matrix A[i][j]"),
        "accuracy_proof_rate.png": plots.heatmap(run.matrices["proof_rate"], labels, "proof-rate matrix A[i][j]"),
        "scores_over_steps.png": plots.scores_over_steps(
            {s: run.matrices[s] for s in ("recall@10", "proof_rate")}, run.baselines, labels),
        "proved_per_step.png": plots.proved_per_step(per_step),
        "difficulty.png": plots.difficulty(diff),
    }
    out_dir = ws.reports_dir
    paths = []
    for name, png in images.items():
        atomic_write_bytes(out_dir / name, png)
        paths.append(out_dir / name)

    def img(name: str, alt: str) -> str:
        uri = "data:image/png;base64," + base64.b64encode(images[name]).decode("ascii")
        return f"<img src='{uri}' alt='{html.escape(alt)}'>"

    repo_list = "".join(f"<li>{i}: {html.escape(run.names[k])} <code>{html.escape(k)}</code></li>"
                        for i, k in enumerate(run.repos))
    diff_table = "<table><tr><th>repository</th><th>theorems</th>" + "".join(
        f"<th>{c}</th>" for c in plots.DIFFICULTY_COLORS) + "</tr>" + "".join(
        f"<tr><td>{html.escape(r['name'])}</td><td class='n'>{r['theorems']}</td>"
        + "".join(f"<td class='n'>{r[c]}</td>" for c in plots.DIFFICULTY_COLORS) + "</tr>" for r in diff) + "</table>"
    step_table = "<table><tr><th>step</th><th>attempted</th><th>proved</th></tr>" + "".join(
        f"<tr><td>{s}</td><td class='n'>{c['attempted']}</td><td class='n'>{c['proved']}</td></tr>"
        for s, c in per_step.items()) + "</table>"
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    sections = [
        ("Run", f"<p>Workspace <code>{html.escape(str(ws.root))}</code>, generated {generated}. "
                f"{run.steps} evaluated step(s).</p><ol start='0' style='list-style:none;padding:0'>{repo_list}</ol>"),
        ("Lifelong metrics",
         "<p>Same numbers as <code>lifelean status --json</code> / <code>lifelean metrics --json</code>; "
         "— = undefined (BWT and forgetting need two steps, WF5 more than five, FWT a baseline).</p>"
         + _metrics_table(metrics)),
        ("Accuracy matrices", img("accuracy_recall10.png", "Recall@10 matrix")
         + img("accuracy_proof_rate.png", "proof-rate matrix")),
        ("Scores per repository over steps", img("scores_over_steps.png", "scores over steps")),
        ("Theorems proved per step", img("proved_per_step.png", "theorems proved per step") + step_table),
        ("Difficulty distribution", img("difficulty.png", "difficulty per repository") + diff_table),
        ("Proofs found", _proofs_table(records, {r.key: r.name for r in repos})),
    ]
    index = out_dir / "index.html"
    atomic_write_text(index, _page(f"lifelean report — {ws.root.name}", sections, metrics))
    return Report(path=index, plots=paths)
