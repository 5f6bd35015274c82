"""PNG plots of a run, drawn with matplotlib's object API on the Agg canvas (no display, no pyplot state).

Each function returns PNG bytes, so the report can both write the file and embed it as a data URI.
An empty input still gives a figure that says "no data yet" — the report always has the same plots.
"""
from __future__ import annotations

import io
import math
from typing import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

DIFFICULTY_COLORS = {"easy": "#4caf50", "medium": "#ffb300", "hard": "#e53935"}
SCORE_COLORS = {"recall@10": "#1e88e5", "tactic@8": "#43a047", "proof_rate": "#e53935"}
PHASE_COLORS = {"index": "#90a4ae", "learn": "#1e88e5", "prove": "#e53935", "bank": "#8e24aa",
                "evaluate": "#fb8c00", "baseline": "#bdbdbd"}


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()


def _empty(ax, text: str = "no data yet") -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="grey")
    ax.set_xticks([])
    ax.set_yticks([])


def _short(name: str, n: int = 24) -> str:
    return name if len(name) <= n else "…" + name[-(n - 1):]


def heatmap(matrix: np.ndarray, labels: Sequence[str], title: str, cols: Sequence[int] | None = None,
            counts: Sequence[int | None] | None = None) -> bytes:
    """The accuracy matrix A[i][j] (row = after learning step i, column = scored repository j); NaN cells blank.

    `cols` are the columns shown (the same for every matrix of a report), `counts[j]` the held-out items
    column j rests on (written under its name). The diagonal, where each repository was learned, is outlined.
    """
    T = len(labels)
    cols = list(range(T)) if cols is None else list(cols)
    fig = Figure(figsize=(max(4.5, 1.6 + 0.55 * len(cols)), max(3.5, 1.2 + 0.42 * T)))
    ax = fig.add_subplot()
    ax.set_title(title)
    if T == 0 or not cols or np.all(np.isnan(matrix)):
        _empty(ax)
        return _png(fig)
    shown = matrix[:, cols]
    masked = np.ma.masked_invalid(shown)
    im = ax.imshow(masked, vmin=0.0, vmax=max(1.0, float(np.nanmax(shown))), cmap="viridis", aspect="auto")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    small = 7 if len(cols) <= 16 else 5
    for i in range(T):
        for c, j in enumerate(cols):
            v = shown[i, c]
            if not math.isnan(v):
                ax.text(c, i, f"{v:.2f}", ha="center", va="center", color="white" if v < 0.6 else "black",
                        fontsize=small)
            if i == j:
                ax.add_patch(_Rect((c - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="#ff1744", linewidth=1.4))
    short = [_short(x, 20) for x in labels]
    xl = [short[j] + ("" if counts is None or counts[j] is None else f" (n={counts[j]})") for j in cols]
    ax.set_xticks(range(len(cols)), xl, rotation=55, ha="right", fontsize=7)
    ax.set_yticks(range(T), [f"{i}: {s}" for i, s in enumerate(short)], fontsize=7)
    ax.set_xlabel("scored repository j (n = held-out items); outlined: the step it was learned")
    ax.set_ylabel("after learning step i")
    return _png(fig)


def _Rect(*args, **kwargs):
    from matplotlib.patches import Rectangle

    return Rectangle(*args, **kwargs)


def scores_over_steps(matrices: Mapping[str, np.ndarray], baselines: Mapping[str, np.ndarray | None],
                      labels: Sequence[str], bm25: Mapping[int, float] | None = None,
                      cols: Sequence[int] | None = None) -> bytes:
    """Small multiples: one panel per repository, its scores after every step (step -1 = before learning),
    a dashed line at the step where it was learned, and BM25's Recall@10 dotted when given."""
    T = len(labels)
    cols = [j for j in range(T) if any(not np.all(np.isnan(A[:, j])) for A in matrices.values())] \
        if cols is None else list(cols)
    if T == 0 or not cols:
        fig = Figure(figsize=(6, 3))
        _empty(fig.add_subplot())
        return _png(fig)
    ncols = min(5, len(cols))
    nrows = -(-len(cols) // ncols)
    fig = Figure(figsize=(2.6 * ncols + 0.5, 1.9 * nrows + 0.9), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=True)
    steps = np.arange(-1, T)
    for k, j in enumerate(cols):
        ax = axes[k // ncols][k % ncols]
        for score, A in matrices.items():
            b = baselines.get(score)
            ys = np.concatenate([[math.nan if b is None else b[j]], A[:, j]])
            if not np.all(np.isnan(ys)):
                ax.plot(steps, ys, marker="o", markersize=2, linewidth=1.2, color=SCORE_COLORS.get(score),
                        label=score)
        ax.axvline(j, color="#616161", linestyle="--", linewidth=0.8)
        if bm25 and bm25.get(j) is not None:
            ax.axhline(bm25[j], color=SCORE_COLORS["recall@10"], linestyle=":", linewidth=1.0, label="BM25 R@10")
        ax.set_title(_short(labels[j], 26), fontsize=8)
        ax.set_ylim(-0.03, 1.03)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=6))
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
    for k in range(len(cols), nrows * ncols):
        axes[k // ncols][k % ncols].set_visible(False)
    handles, names = [], []
    for row in axes:
        for ax in row:
            for h, n in zip(*ax.get_legend_handles_labels()):
                if n not in names:
                    handles.append(h)
                    names.append(n)
    handles.append(Line2D([], [], color="#616161", linestyle="--", linewidth=0.8))
    names.append("step it was learned")
    fig.legend(handles, names, loc="outside upper center", ncol=len(names), fontsize=8)
    fig.supxlabel("after step (−1 = untrained encoder, empty bank)", fontsize=8)
    return _png(fig)


def phase_seconds(rows: Sequence[Mapping[str, object]]) -> bytes:
    """Stacked bars of seconds per phase for each step (from the loop's `kind: "timing"` records)."""
    fig = Figure(figsize=(max(5.0, 1.5 + 0.28 * len(rows)), 3.4), layout="constrained")
    ax = fig.add_subplot()
    ax.set_title("time per phase and step")
    if not rows:
        _empty(ax)
        return _png(fig)
    x = np.arange(len(rows))
    bottom = np.zeros(len(rows))
    for phase, color in PHASE_COLORS.items():
        vals = np.array([float(r.get(phase) or 0.0) for r in rows])  # type: ignore[arg-type]
        if vals.any():
            ax.bar(x, vals, bottom=bottom, color=color, label=phase, width=0.8)
            bottom += vals
    ax.set_xticks(x, [str(r["step"]) for r in rows], fontsize=7)
    ax.set_xlabel("step (−1 = baseline row)")
    ax.set_ylabel("seconds")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _png(fig)


def training_loss(rows: Sequence[Mapping[str, object]]) -> bytes:
    """First and last training batch loss of each step (from `kind: "learn"` records)."""
    fig = Figure(figsize=(max(5.0, 1.5 + 0.28 * len(rows)), 3.2), layout="constrained")
    ax = fig.add_subplot()
    ax.set_title("retriever training loss per step (first → last batch)")
    if not rows:
        _empty(ax, "no training loss recorded")
        return _png(fig)
    x = np.arange(len(rows))
    first = [float(r["loss_first"]) if r.get("loss_first") is not None else math.nan for r in rows]  # type: ignore
    last = [float(r["loss_last"]) if r.get("loss_last") is not None else math.nan for r in rows]  # type: ignore
    ax.vlines(x, first, last, color="#90caf9", linewidth=2)
    ax.plot(x, first, "o", color="#90caf9", markersize=4, label="first batch")
    ax.plot(x, last, "o", color="#1565c0", markersize=4, label="last batch")
    ax.set_xticks(x, [str(r["step"]) for r in rows], fontsize=7)
    ax.set_xlabel("step")
    ax.set_ylabel("contrastive loss")
    ax.legend(fontsize=7)
    return _png(fig)


def proved_per_step(counts: Mapping[int, Mapping[str, int]]) -> bytes:
    """Bars of theorems attempted and proved by the prove phase of each step."""
    fig = Figure(figsize=(6, 3.6))
    ax = fig.add_subplot()
    ax.set_title("theorems proved per step")
    if not counts:
        _empty(ax)
        return _png(fig)
    steps = sorted(counts)
    x = np.arange(len(steps))
    att = [counts[s]["attempted"] for s in steps]
    pro = [counts[s]["proved"] for s in steps]
    ax.bar(x - 0.2, att, width=0.4, label="attempted", color="#bdbdbd")
    bars = ax.bar(x + 0.2, pro, width=0.4, label="proved", color="#1e88e5")
    ax.bar_label(bars, fontsize=8)
    ax.set_xticks(x, [str(s) for s in steps])
    ax.set_xlabel("step")
    ax.set_ylabel("theorems")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=8)
    return _png(fig)


def difficulty(rows: Sequence[Mapping[str, int | str]]) -> bytes:
    """Stacked bars per repository: easy / medium / hard exactly as `lifelean curriculum` counts them
    (LeanAgent's e^S thresholds; sorry theorems are hard, unrated ones split in thirds)."""
    fig = Figure(figsize=(7, max(2.5, 1.0 + 0.45 * len(rows))), layout="constrained")
    ax = fig.add_subplot()
    ax.set_title("difficulty distribution per repository")
    if not rows:
        _empty(ax)
        return _png(fig)
    y = np.arange(len(rows))
    left = np.zeros(len(rows))
    for cat, color in DIFFICULTY_COLORS.items():
        vals = np.array([int(r[cat]) for r in rows], dtype=float)
        ax.barh(y, vals, left=left, color=color, label=cat)
        left += vals
    ax.set_yticks(y, [_short(str(r["name"]), 32) for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("theorems")
    fig.legend(fontsize=8, ncol=3, loc="outside lower center")
    return _png(fig)
