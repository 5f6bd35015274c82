"""bench/forgetting.py's row specs: each names the rows the bench's tables say it does."""
from __future__ import annotations

import pytest

from bench.forgetting import parse_spec


def test_joint_plus_is_its_own_row_not_joint_composed():
    """`joint+` (the default recipe, `--joint-epochs` passes) once parsed as `joint` + an empty strategy, so
    its row silently repeated the plain `joint` row."""
    assert parse_spec("joint+") == (["joint+"], {})
    assert parse_spec("joint/query=file") == (["joint"], {"query": "file"})


def test_row_specs_compose_strategies_and_type_overrides():
    assert parse_spec("replay+distill/temperature=0.2/min_steps=4") == (["replay", "distill"],
                                                                       {"temperature": 0.2, "min_steps": 4})
    with pytest.raises(SystemExit, match="query"):
        parse_spec("naive/query=path")
    with pytest.raises(SystemExit, match="unknown LearningConfig field"):
        parse_spec("naive/nope=1")


def _result(recall: list[float], mrr: list[float], unseen: list[float] | None = None) -> dict:
    items = {"recall@10": recall, "mrr": mrr}
    return {"pooled": {"all": {"items": items}},
            "unseen": {"items": {"recall@10": unseen, "mrr": unseen}} if unseen is not None else None}


def test_rows_are_compared_with_joint_tactic_by_tactic():
    """`versus` pairs the two rows' scores on the same tactics: a row against itself differs by exactly 0 with
    no spread; a row that wins on some tactics and loses on none gets a positive gain whose interval is above
    zero only where the wins are many."""
    from bench.forgetting import interval, versus

    joint = _result([0.0, 1.0, 0.5, 0.5] * 10, [0.2, 1.0, 0.5, 0.1] * 10, unseen=[0.5] * 30)
    same = versus(joint, joint)
    assert same["stream"]["recall@10"] == {"value": 0.0, "n": 40, "low": 0.0, "high": 0.0}
    assert same["unseen"]["mrr"]["value"] == 0.0

    better = _result([1.0, 1.0, 0.5, 0.5] * 10, [0.2, 1.0, 0.5, 0.1] * 10, unseen=[0.5] * 29 + [1.0])
    gain = versus(better, joint)
    assert gain["stream"]["recall@10"]["value"] == pytest.approx(0.25)
    assert gain["stream"]["recall@10"]["low"] > 0            # 10 wins in 40 tactics
    assert gain["stream"]["mrr"]["value"] == 0.0
    assert gain["unseen"]["recall@10"]["value"] == pytest.approx(0.5 / 30)
    assert gain["unseen"]["recall@10"]["low"] == 0.0         # one win in 30: the interval holds zero
    assert interval(gain["stream"]["recall@10"]).startswith("+0.250 (+0.")

    # without --unseen, or on other tactics, there is nothing to pair
    assert "unseen" not in versus(_result([1.0], [1.0]), _result([0.0], [0.0]))
    assert versus(_result([1.0, 0.0], [1.0, 0.0]), _result([0.0], [0.0])) == {}
