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
from matplotlib.ticker import MaxNLocator

DIFFICULTY_COLORS = {"easy": "#4caf50", "medium": "#ffb300", "hard": "#e53935", "sorry": "#6d4c41",
                     "unrated": "#9e9e9e"}


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


def heatmap(matrix: np.ndarray, labels: Sequence[str], title: str) -> bytes:
    """The accuracy matrix A[i][j] (row = after learning repo i, column = scored repo j); NaN cells blank."""
    T = len(labels)
    fig = Figure(figsize=(max(4.5, 1.0 + 0.9 * T), max(3.5, 0.8 + 0.7 * T)))
    ax = fig.add_subplot()
    ax.set_title(title)
    if T == 0 or np.all(np.isnan(matrix)):
        _empty(ax)
        return _png(fig)
    cols = [j for j in range(T) if not np.all(np.isnan(matrix[:, j]))]  # repositories with held-out data
    matrix = matrix[:, cols]
    masked = np.ma.masked_invalid(matrix)
    im = ax.imshow(masked, vmin=0.0, vmax=max(1.0, float(np.nanmax(matrix))), cmap="viridis")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    for i in range(T):
        for j in range(len(cols)):
            v = matrix[i, j]
            ax.text(j, i, "—" if math.isnan(v) else f"{v:.2f}", ha="center", va="center",
                    color="white" if math.isnan(v) or v < 0.6 else "black", fontsize=8)
    short = [_short(x) for x in labels]
    ax.set_xticks(range(len(cols)), [short[j] for j in cols], rotation=40, ha="right", fontsize=8)
    ax.set_yticks(range(T), [f"{i}: {s}" for i, s in enumerate(short)], fontsize=8)
    ax.set_xlabel("scored repository j")
    ax.set_ylabel("after learning step i")
    return _png(fig)


def scores_over_steps(matrices: Mapping[str, np.ndarray], baselines: Mapping[str, np.ndarray | None],
                      labels: Sequence[str]) -> bytes:
    """One panel per score: each repository's score after every step (step -1 = before learning)."""
    fig = Figure(figsize=(13, 4.6), layout="constrained")
    axes = fig.subplots(1, len(matrices), squeeze=False)[0]
    for ax, (score, A) in zip(axes, matrices.items()):
        ax.set_title(f"{score} per repository over steps")
        b = baselines.get(score)
        if len(labels) == 0 or (np.all(np.isnan(A)) and (b is None or np.all(np.isnan(b)))):
            _empty(ax)
            continue
        steps = np.arange(-1, len(labels))
        for j, name in enumerate(labels):
            ys = np.concatenate([[math.nan if b is None else b[j]], A[:, j]])
            if np.all(np.isnan(ys)):
                continue  # no held-out theorems: nothing to plot
            ax.plot(steps, ys, marker="o", markersize=3, label=_short(name))
        every = max(1, len(steps) // 12)
        ax.set_xticks(steps[::every], ["base" if s < 0 else str(s) for s in steps[::every]])
        ax.set_xlabel("after step")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    handles, names = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, names, loc="outside right upper", fontsize=7)
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
    """Stacked bars per repository: easy / medium / hard (by LeanAgent's e^S thresholds), sorry, unrated."""
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
    fig.legend(fontsize=8, ncol=5, loc="outside lower center")
    return _png(fig)
