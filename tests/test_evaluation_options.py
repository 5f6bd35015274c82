"""`[evaluation]` options bound the matrix's cost without moving the metrics they promise to keep."""
from __future__ import annotations

import numpy as np
import pytest

from agent.config import RunConfig
from agent.evaluation import lifelong as M
from agent.loop.context import LoopContext
from agent.loop.evaluate import due, row_columns, sampled
from agent.workspace import PHASES, StreamEntry, Workspace


def _ctx(tmp_path, columns: str = "all", every: int = 1) -> LoopContext:
    ws = Workspace.open(tmp_path / "ws", create=True)
    state = ws.load_state()
    for i in range(5):
        state.entries.append(StreamEntry(key=f"R{i}@1", name=f"R{i}", url="u", commit="1", source="s",
                                         step=i if i < 3 else None,
                                         phases={p: "done" for p in PHASES} if i < 2 else {}))
    state.next_step = 3
    config = RunConfig()
    config.evaluation.columns, config.evaluation.every = columns, every  # type: ignore[assignment]
    return LoopContext(ws, config, state)


def test_seen_plus_next_scores_learned_entries_and_the_next_one(tmp_path):
    assert [e.key for e in row_columns(_ctx(tmp_path), 1)] == [f"R{i}@1" for i in range(5)]
    ctx = _ctx(tmp_path, columns="seen+next")
    assert [e.key for e in row_columns(ctx, 1)] == ["R0@1", "R1@1", "R2@1"]
    assert [e.key for e in row_columns(ctx, -1)] == ["R0@1"]


def test_seen_plus_next_keeps_acc_bwt_fwt_and_forgetting_of_seen_rows():
    rng = np.random.default_rng(0)
    A = rng.uniform(size=(5, 5))
    b = rng.uniform(size=5)
    bounded = A.copy()
    for i in range(5):
        bounded[i, i + 2:] = np.nan        # what seen+next leaves unevaluated
    for metric in (M.acc, M.bwt):
        assert metric(bounded) == pytest.approx(metric(A))
    assert M.fwt(bounded, b) == pytest.approx(M.fwt(A, b))
    assert M.forgetting(bounded, seen_only=True) == pytest.approx(M.forgetting(A, seen_only=True))
    # `forgetting` over every earlier row also counts zero-shot cells, which seen+next does not evaluate
    assert M.forgetting(bounded) == pytest.approx(M.forgetting(bounded, seen_only=True))


def test_every_n_skips_rows_but_never_the_last_of_a_plan(tmp_path):
    ctx = _ctx(tmp_path, every=2)
    e0, e1, e2 = ctx.state.started()
    assert not due(ctx, e0) and due(ctx, e1)          # step ids 0 and 1: (i + 1) % 2
    assert not due(ctx, e2)                            # pending entries follow it
    for e in ctx.state.pending():
        ctx.state.entries.remove(e)
    assert due(ctx, e2)                                # now the last of the plan


def test_a_cell_sample_is_seeded_and_bounded():
    items = list(range(40))
    a = sampled(items, 7, seed=3, row=2, key="R1@1")
    assert a == sampled(items, 7, seed=3, row=2, key="R1@1") and len(a) == 7 and a == sorted(a)
    assert a != sampled(items, 7, seed=3, row=3, key="R1@1")
    assert sampled(items, 0, 3, 2, "x") == items


def test_paired_difference_is_the_mean_gain_with_an_interval_over_the_items():
    from agent.evaluation.bootstrap import paired_difference

    same_gain = paired_difference([0.5, 0.7, 0.1, 0.9], [0.4, 0.6, 0.0, 0.8])
    assert same_gain["value"] == pytest.approx(0.1) and same_gain["n"] == 4
    assert same_gain["low"] == pytest.approx(0.1) and same_gain["high"] == pytest.approx(0.1)   # pairing: no spread
    mixed = paired_difference([1.0, 0.0, 1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 1.0, 0.0, 0.0])
    assert mixed["value"] == pytest.approx(1 / 6) and mixed["low"] < 0 < mixed["high"]   # noise, not a gain
    assert paired_difference([0.3], [0.1])["low"] is None
