"""`reports/index.html`: one self-contained page about a run (plots embedded as data URIs).

The lifelong metrics shown are :func:`agent.evaluation.matrices.workspace_metrics` verbatim — the same numbers
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

import numpy as np

from agent.report import plots
from agent.evaluation.matrices import loop_proof_records, metrics_of, proofs_per_step, read_matrices
from agent.workspace import Workspace
from common.atomic import atomic_write_bytes

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
    """Per repository: Easy/Medium/Hard exactly as `lifelean curriculum` counts them (curriculum/difficulty.py:
    e^S with global p33/p67 thresholds, sorry counted as hard, unrated theorems split in thirds), with the
    unrated and sorry theorems also counted on their own."""
    from curriculum.difficulty import compute_thresholds, rate_repository

    th = compute_thresholds(repos)
    return [{"key": r.key, "name": r.name, "theorems": r.theorems, "easy": r.easy, "medium": r.medium,
             "hard": r.hard, "unrated": r.unrated, "sorry": r.sorry}
            for r in (rate_repository(repo, th) for repo in repos)]


def _num(v: Any) -> str:
    return "—" if v is None else html.escape(json.dumps(v))


def _metrics_table(m: dict[str, Any]) -> str:
    scores = [s for s in ("recall@10", "tactic@8", "proof_rate")]
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
img{max-width:100%;display:block;margin:1em 0}code{color:#555}p.note,small{color:#666;font-size:85%}
table.settings th{font-weight:normal;color:#555}p.collapsed{background:#f5f5f5;padding:6px 10px}"""


def _page(title: str, sections: list[tuple[str, str]], metrics: dict[str, Any]) -> str:
    data = json.dumps(metrics, ensure_ascii=False).replace("</", "<\\/")
    body = "".join(f"<h2>{html.escape(h)}</h2>\n{content}\n" for h, content in sections)
    return (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>\n{body}"
            f"<script type='application/json' id='lifelean-metrics'>{data}</script></body></html>\n")


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for name in ("lifelean", "torch", "transformers", "chromadb"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _settings_table(state: Any, ws: Workspace) -> str:
    from agent.commands._common import run_settings

    run = state.run
    settings = run_settings(run.options if run else None)
    rows = [("workspace", str(ws.root))]
    rows += [(k, str(v)) for k, v in settings.items()]
    if run is not None:
        rows.append(("stream started", run.started_at))
    rows += [(f"{k} version", v) for k, v in _versions().items()]
    cells = "".join(f"<tr><th>{html.escape(k)}</th><td><code>{html.escape(v)}</code></td></tr>" for k, v in rows)
    note = "" if run else "<p>No run has started yet: the settings are those a run would be given.</p>"
    return note + f"<table class='settings'>{cells}</table>"


def _records(ws: Workspace, kind: str) -> list[dict[str, Any]]:
    from common.atomic import iter_jsonl_tolerant

    return [r for r in iter_jsonl_tolerant(ws.metrics_path) if isinstance(r, dict) and r.get("kind") == kind]


def _cell_counts(ws: Workspace, repos: list[str]) -> dict[str, list[int | None]]:
    """Held-out items each column rests on: tactics (retrieval), tactic steps (tactic@k), theorems (proof rate),
    from the newest eval record of each column."""
    col = {k: j for j, k in enumerate(repos)}
    out: dict[str, list[int | None]] = {"tactics": [None] * len(repos), "tactic_steps": [None] * len(repos),
                                         "theorems": [None] * len(repos)}
    for r in _records(ws, "eval"):
        j = col.get(r.get("repo"))
        if j is None:
            continue
        for field in out:
            if isinstance(r.get(field), int):
                out[field][j] = r[field]
    return out


def _bm25_row(ws: Workspace, repos: list[Any]) -> dict[str, dict[str, Any]]:
    """BM25 over the whole workspace corpus on each repository's held-out tactics (the retrieval columns)."""
    from agent.evaluation.retrieval import bm25_scores
    from agent.proving import held_out_theorems

    from agent.learn.retriever import Corpus

    corpus = Corpus.from_repositories(repos)   # the premise texts retrieval is scored against
    names, texts = corpus.names, corpus.texts
    out = {}
    for repo in repos:
        tests = held_out_theorems(repo)
        out[repo.key] = bm25_scores(names, texts, tests) if tests and names else {}
    return out


def _fmt(v: Any, digits: int = 3) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def _baselines_table(run: Any, bm25: dict[str, dict[str, Any]], counts: dict[str, list[int | None]]) -> str:
    A = run.matrices["recall@10"]
    base = run.baselines.get("recall@10")
    T = run.steps
    rows = []
    means: dict[str, list[float]] = {"bm25": [], "untrained": [], "learned": [], "final": []}
    for j, key in enumerate(run.repos):
        b = bm25.get(key, {}).get("recall@10")
        u = None if base is None else base[j]
        own = A[j, j] if T else math.nan
        final = A[T - 1, j] if T else math.nan
        if all(v is None or (isinstance(v, float) and math.isnan(v)) for v in (b, u, own, final)):
            continue
        for name, v in (("bm25", b), ("untrained", u), ("learned", own), ("final", final)):
            if v is not None and not math.isnan(v):
                means[name].append(float(v))
        rows.append(f"<tr><td>{html.escape(run.names[key])}</td><td class='n'>{counts['tactics'][j] or '—'}</td>"
                    f"<td class='n'>{_fmt(b)}</td><td class='n'>{_fmt(u)}</td><td class='n'>{_fmt(own)}</td>"
                    f"<td class='n'>{_fmt(final)}</td></tr>")
    if not rows:
        return "<p>No evaluated retrieval column yet.</p>"
    mean = "".join(f"<td class='n'><b>{_fmt(sum(v) / len(v) if v else None)}</b></td>" for v in means.values())
    return ("<table><tr><th>repository</th><th>held-out tactics</th><th>BM25</th><th>untrained encoder "
            "(step −1)</th><th>retriever when learned A[j][j]</th><th>retriever after the last step</th></tr>"
            + "".join(rows) + f"<tr><th>mean</th><td></td>{mean}</tr></table>")


def _intervals_table(run: Any) -> str:
    from agent.evaluation.bootstrap import metric_intervals

    body = []
    for score in ("recall@10", "tactic@8", "proof_rate"):
        iv = metric_intervals(run.matrices[score], run.baselines.get(score))
        cells = ""
        for m in ("acc", "bwt", "fwt"):
            r = iv[m]
            ci = "" if r["low"] is None else f" [{r['low']:+.3f}, {r['high']:+.3f}]"
            cells += f"<td class='n'>{_fmt(r['value'])}{ci} <small>(n={r['n']})</small></td>"
        body.append(f"<tr><th>{html.escape(score)}</th>{cells}</tr>")
    return ("<table><tr><th>score</th><th>ACC [95% CI]</th><th>BWT [95% CI]</th><th>FWT [95% CI]</th></tr>"
            + "".join(body) + "</table><p class='note'>Percentile bootstrap (2000 resamples) over repositories "
            "(columns): the metrics records keep one number per cell, not per held-out item, so the noise of the "
            "few items inside a cell is not in these intervals; n = columns with a defined term.</p>")


def _phase_rows(ws: Workspace, names: dict[int, str]) -> list[dict[str, Any]]:
    per: dict[int, dict[str, Any]] = {}
    for r in _records(ws, "timing"):
        step = r.get("step")
        if not isinstance(step, int) or not isinstance(r.get("seconds"), (int, float)):
            continue
        row = per.setdefault(step, {"step": step, "repo": names.get(step, "(all)" if step < 0 else "?")})
        row[str(r.get("phase"))] = float(r["seconds"])  # a redone phase: the last record wins
    return [per[k] for k in sorted(per)]


def _phase_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "<p>No timing recorded yet.</p>"
    phases = [p for p in plots.PHASE_COLORS if any(p in r for r in rows)]
    head = "".join(f"<th>{p}</th>" for p in phases)
    body = "".join(
        f"<tr><td>{r['step']}</td><td>{html.escape(str(r['repo']))}</td>"
        + "".join(f"<td class='n'>{_fmt(r.get(p), 1)}</td>" for p in phases)
        + f"<td class='n'>{_fmt(sum(float(r.get(p) or 0) for p in phases), 1)}</td></tr>" for r in rows)
    total = "".join(f"<td class='n'><b>{_fmt(sum(float(r.get(p) or 0) for r in rows), 1)}</b></td>" for p in phases)
    grand = sum(float(r.get(p) or 0) for r in rows for p in phases)
    return (f"<table><tr><th>step</th><th>repository</th>{head}<th>total s</th></tr>{body}"
            f"<tr><th></th><th>all steps</th>{total}<td class='n'><b>{_fmt(grand, 1)}</b></td></tr></table>")


def _learn_rows(ws: Workspace, names: dict[int, str]) -> list[dict[str, Any]]:
    per: dict[int, dict[str, Any]] = {}
    for r in _records(ws, "learn"):
        if isinstance(r.get("step"), int):
            per[r["step"]] = dict(r, repo_name=names.get(r["step"], r.get("repo")))
    return [per[k] for k in sorted(per)]


def _learn_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ("<p>No training loss recorded in metrics.jsonl yet (the loop writes it as "
                "<code>{\"kind\": \"learn\", \"step\", \"repo\", \"loss_first\", \"loss_last\", "
                "\"examples\", \"batches\"}</code> records).</p>")
    body = "".join(
        f"<tr><td>{r['step']}</td><td>{html.escape(str(r['repo_name']))}</td>"
        f"<td class='n'>{r.get('examples', '—')}</td><td class='n'>{r.get('batches', '—')}</td>"
        f"<td class='n'>{_fmt(r.get('loss_first'))}</td><td class='n'>{_fmt(r.get('loss_last'))}</td>"
        f"<td class='n'>{_fmt(r.get('seconds'), 1)}</td></tr>" for r in rows)
    return ("<table><tr><th>step</th><th>repository</th><th>examples</th><th>batches</th><th>first loss</th>"
            f"<th>last loss</th><th>seconds</th></tr>{body}</table>")


def _matrix_section(run: Any, counts: dict[str, list[int | None]], cols: list[int], labels: list[str],
                    images: dict[str, bytes]) -> str:
    parts = []
    for score, file, count_field, title in (
            ("recall@10", "accuracy_recall10.png", "tactics", "Recall@10"),
            ("tactic@8", "accuracy_tactic8.png", "tactic_steps", "tactic@8"),
            ("proof_rate", "accuracy_proof_rate.png", "theorems", "proof-rate")):
        A = run.matrices[score]
        cells = A[~np.isnan(A)]
        if cells.size and not np.any(cells):
            parts.append(f"<p class='collapsed'><b>{title} matrix</b>: all {cells.size} evaluated cells are 0 "
                         f"(held-out items per column: {', '.join(str(counts[count_field][j] or 0) for j in cols)}"
                         ").</p>")
            continue
        images[file] = plots.heatmap(A, labels, f"{title} matrix A[i][j]", cols=cols, counts=counts[count_field])
        parts.append(f"<img src='{_uri(images[file])}' alt='{title} matrix'>")
    return "".join(parts)


def _uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _write_public(path: Path, data: bytes) -> None:
    """Atomic write, then mode 0644: a report is meant to be read (served, shared), unlike the temp file's 0600."""
    import os

    atomic_write_bytes(path, data)
    os.chmod(path, 0o644)


def write_report(ws: Workspace) -> Report:
    """Write the PNGs and `reports/index.html` of the workspace's run; return their paths."""
    state = ws.load_state()
    run = read_matrices(ws, state)
    metrics = metrics_of(run)
    records = loop_proof_records(ws, state)
    per_step = proofs_per_step(records)
    repos = ws.load_repositories([e for e in state.started()] + state.pending())
    diff = difficulty_rows(repos)
    labels = [run.names[k] for k in run.repos]
    counts = _cell_counts(ws, run.repos)
    # the same columns in every matrix: those where any score was ever evaluated
    cols = [j for j in range(run.steps)
            if any(not np.all(np.isnan(run.matrices[s][:, j])) for s in ("recall@10", "tactic@8", "proof_rate"))]
    by_key = {r.key: r for r in repos}
    bm25 = _bm25_row(ws, [by_key[k] for k in run.repos if k in by_key])
    step_names = {e.step: e.name for e in state.started() if e.step is not None}
    phases = _phase_rows(ws, step_names)
    learn = _learn_rows(ws, step_names)

    images: dict[str, bytes] = {}
    matrices_html = _matrix_section(run, counts, cols, labels, images)
    bm25_col = {j: bm25.get(k, {}).get("recall@10") for j, k in enumerate(run.repos)}
    images["scores_over_steps.png"] = plots.scores_over_steps(
        {s: run.matrices[s] for s in ("recall@10", "tactic@8", "proof_rate")}, run.baselines, labels,
        bm25=bm25_col, cols=cols)
    images["proved_per_step.png"] = plots.proved_per_step(per_step)
    images["difficulty.png"] = plots.difficulty(diff)
    images["phase_seconds.png"] = plots.phase_seconds(phases)
    if learn:
        images["training_loss.png"] = plots.training_loss(learn)
    out_dir = ws.reports_dir
    paths = []
    for name, png in images.items():
        _write_public(out_dir / name, png)
        paths.append(out_dir / name)

    def img(name: str, alt: str) -> str:
        return f"<img src='{_uri(images[name])}' alt='{html.escape(alt)}'>" if name in images else ""

    repo_list = "".join(f"<li>{i}: {html.escape(run.names[k])} <code>{html.escape(k)}</code></li>"
                        for i, k in enumerate(run.repos))
    diff_table = ("<table><tr><th>repository</th><th>theorems</th><th>easy</th><th>medium</th><th>hard</th>"
                  "<th>of which unrated</th><th>of which sorry</th></tr>" + "".join(
                      f"<tr><td>{html.escape(r['name'])}</td><td class='n'>{r['theorems']}</td>"
                      + "".join(f"<td class='n'>{r[c]}</td>" for c in ("easy", "medium", "hard", "unrated", "sorry"))
                      + "</tr>" for r in diff) + "</table>")
    step_table = "<table><tr><th>step</th><th>attempted</th><th>proved</th></tr>" + "".join(
        f"<tr><td>{s}</td><td class='n'>{c['attempted']}</td><td class='n'>{c['proved']}</td></tr>"
        for s, c in per_step.items()) + "</table>"
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    sections = [
        ("Run", f"<p>Generated {generated}. {run.steps} step(s) of the stream started.</p>"
                + _settings_table(state, ws)
                + f"<details><summary>Repositories in processing order (row/column i of the matrices)</summary>"
                  f"<ol start='0' style='list-style:none;padding:0'>{repo_list}</ol></details>"),
        ("Lifelong metrics",
         "<p>Same numbers as <code>lifelean status --json</code> / <code>lifelean metrics --json</code>; "
         "— = undefined (BWT and forgetting need two steps, WF5 more than five, FWT a baseline).</p>"
         + _intervals_table(run) + _metrics_table(metrics)),
        ("Retriever against its baselines (Recall@10)",
         "<p>BM25 (Okapi, over the same premise corpus) and the untrained encoder (the baseline row, step −1) "
         "beside the retriever on each repository's held-out tactics. The encoders' rows rank as the prover "
         "retrieves (<code>[memory] rerank</code>: with <code>bm25</code>, each encoder's top 100 re-ordered by "
         "reciprocal rank fusion with BM25 among those 100).</p>" + _baselines_table(run, bm25, counts)),
        ("Accuracy matrices",
         "<p>Every matrix shows the same columns (repositories with held-out theorems); n under a column is the "
         "number of held-out items its cells rest on (tactics, tactic steps, theorems). The outlined cell of "
         "each row is the repository learned at that step.</p>" + matrices_html),
        ("Scores per repository over steps",
         "<p>One panel per repository; the dashed line marks the step at which it was learned.</p>"
         + img("scores_over_steps.png", "scores over steps")),
        ("Training", img("training_loss.png", "training loss per step") + _learn_table(learn)),
        ("Time per phase", img("phase_seconds.png", "seconds per phase and step") + _phase_table(phases)),
        ("Theorems proved per step", img("proved_per_step.png", "theorems proved per step") + step_table),
        ("Difficulty distribution",
         "<p>Easy/medium/hard as <code>lifelean curriculum</code> counts them: difficulty e^S (S = proof steps) "
         "against the global 33rd/67th percentiles; sorry theorems count as hard, unrated (term-mode) ones are "
         "split in thirds.</p>" + img("difficulty.png", "difficulty per repository") + diff_table),
        ("Proofs found", _proofs_table(records, {r.key: r.name for r in repos})),
    ]
    index = out_dir / "index.html"
    page = _page(f"lifelean report — {ws.root.name}", sections, metrics)
    _write_public(index, page.encode("utf-8"))
    return Report(path=index, plots=paths)
