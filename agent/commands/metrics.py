"""`lifelean metrics [MATRIX.json]`: lifelong-learning metrics of a given matrix, or of the workspace's run."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import click

from agent.evaluation import lifelong as M
from agent.commands._common import emit, json_option, workspace_from
from common.errors import InputError

EXPECTED = '{"matrix": [[a00, a01, ...], ...] (square, numbers or null), "baseline": [b0, b1, ...] (optional)}'

# (key, label) in display order; keys absent from a suite (fwt without baseline) are skipped.
LABELS = (
    ("acc", "ACC (mean of last row)"),
    ("bwt", "BWT (Lopez-Paz & Ranzato)"),
    ("fwt", "FWT (vs. baseline)"),
    ("forgetting", "Forgetting (Chaudhry)"),
    ("forgetting_seen", "Forgetting, rows i >= j only"),
    ("plasticity", "Plasticity (mean diagonal)"),
    ("incremental_acc", "Avg. incremental ACC"),
    ("dr_acc", "ACC (Díaz-Rodríguez)"),
    ("expanded_bwt", "Expanded BWT (Díaz-Rodríguez)"),
    ("dr_fwt", "FWT (Díaz-Rodríguez)"),
    ("wf5", "WF5 (LeanAgent)"),
    ("wp5", "WP5 (LeanAgent)"),
    ("fm", "FM (LeanAgent)"),
    ("ip", "IP (LeanAgent)"),
    ("cfr", "CFR (LeanAgent)"),
)


def _entry(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return not math.isinf(float(value))
    except OverflowError:   # an integer beyond float range
        return False


MAX_MATRIX_BYTES = 64 << 20   # a 1,000 x 1,000 matrix of floats is about 20 MB of JSON


def _show(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def read_matrix_file(path: Path) -> tuple[list[list[float | None]], list[float | None] | None]:
    """Parse and validate MATRIX.json; any problem is an :class:`InputError` naming the file."""
    try:
        if path.stat().st_size > MAX_MATRIX_BYTES:
            raise InputError(f"{path}: {path.stat().st_size} bytes is too large for an accuracy matrix "
                             f"(limit {MAX_MATRIX_BYTES}); expected {EXPECTED}")
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: file not found; expected a JSON file {EXPECTED}") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory; expected a JSON file {EXPECTED}") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text; expected a JSON file {EXPECTED}") from None
    except (ValueError, RecursionError) as exc:   # JSONDecodeError, huge integers, deep nesting
        first = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise InputError(f"{path}: not valid JSON ({first}); expected {EXPECTED}") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror or exc}); expected a JSON file {EXPECTED}") from None
    if isinstance(data, list):
        data = {"matrix": data}
    if not isinstance(data, dict) or "matrix" not in data:
        raise InputError(f"{path}: no \"matrix\" key; expected {EXPECTED}")
    matrix, baseline = data["matrix"], data.get("baseline")
    if not isinstance(matrix, list) or not matrix or not all(isinstance(row, list) for row in matrix):
        raise InputError(f"{path}: \"matrix\" must be a non-empty list of rows; expected {EXPECTED}")
    T = len(matrix)
    for i, row in enumerate(matrix):
        if len(row) != T:
            raise InputError(f"{path}: \"matrix\" must be square: row {i} has {len(row)} entries, "
                             f"expected {T} (one per row)")
        for j, v in enumerate(row):
            if not _entry(v):
                raise InputError(f"{path}: matrix[{i}][{j}] is {_show(v)}; expected a finite number or null")
    if baseline is not None:
        if not isinstance(baseline, list) or len(baseline) != T:
            got = f"{len(baseline)} entries" if isinstance(baseline, list) else _show(baseline)
            raise InputError(f"{path}: \"baseline\" must be a list of {T} entries (one per column), got {got}")
        for j, v in enumerate(baseline):
            if not _entry(v):
                raise InputError(f"{path}: baseline[{j}] is {_show(v)}; expected a finite number or null")
    return matrix, baseline


def _fmt(value: Any) -> str:
    return "—" if value is None else f"{value:.4f}"


def render_suite(title: str, suite: dict[str, Any] | None) -> None:
    """Print one metrics table for people (None → a line saying there is nothing to show)."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if suite is None:
        console.print(f"{title}: no evaluated steps yet")
        return
    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, label in LABELS:
        if key in suite:
            table.add_row(label, _fmt(suite[key]))
    console.print(table)


def _render_run(data: dict[str, Any]) -> None:
    repos = data["repos"]
    from agent.commands._common import echo_wrapped

    click.echo(f"{data['steps']} step(s); repositories in processing order (matrix row/column i):"
               if repos else "no step of the stream has started yet")
    for i, key in enumerate(repos):
        echo_wrapped(f"{i:>3}  {key}", indent="  ", subsequent="       ")
    from rich.console import Console
    from rich.table import Table

    scores = [s for s in ("recall@10", "tactic@8", "proof_rate")]
    table = Table(title="Lifelong metrics (one column per score)", title_justify="left", box=None,
                  pad_edge=False, header_style="bold")
    table.add_column("metric", overflow="fold")
    for score in scores:
        table.add_column(score, justify="right", no_wrap=True)
    for key, label in LABELS:
        if any(key in (data.get(s) or {}) for s in scores):
            table.add_row(label, *(_fmt((data.get(s) or {}).get(key)) for s in scores))
    Console().print(table)
    from agent.commands._common import echo_wrapped

    for score in scores:
        ci = (data.get(score) or {}).get("ci95") or {}
        shown = [f"{name.upper()} [{v[0]:.3f}, {v[1]:.3f}]" for name, v in ci.items() if v]
        if shown:
            echo_wrapped(f"95% interval over repositories, {score}: " + ", ".join(shown))
    echo_wrapped("— = undefined (e.g. BWT needs two steps, WF5 needs more than five; FWT needs a baseline).")


@click.command("metrics")
@click.argument("matrix_file", required=False, type=click.Path(path_type=Path))
@json_option
@click.pass_context
def metrics(ctx: click.Context, matrix_file: Path | None, as_json: bool) -> None:
    """Lifelong-learning metrics of MATRIX_FILE, or of this workspace's run when no file is given.

    \b
    MATRIX_FILE is JSON: {"matrix": [[...], ...], "baseline": [...]} where matrix[i][j] is the score on
    task j after learning tasks 0..i (null = not evaluated) and the optional baseline is the untrained
    model's score per task (FWT is given only with it).

    \b
    Example:
      echo '{"matrix": [[0.6, 0.3], [0.5, 0.7]], "baseline": [0.1, 0.2]}' > /tmp/m.json
      lifelean metrics /tmp/m.json
      lifelean -w ~/lifelean-demo metrics --json | jq '."recall@10".bwt'
    """
    if matrix_file is not None:
        matrix, baseline = read_matrix_file(matrix_file)
        result = M.json_safe(M.suite(matrix, baseline))
        emit(result, as_json, lambda d: render_suite(f"Lifelong metrics of {matrix_file}", d))
        return
    from agent.evaluation.matrices import workspace_metrics

    ws = workspace_from(ctx)
    emit(workspace_metrics(ws), as_json, _render_run)
