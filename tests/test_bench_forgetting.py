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
