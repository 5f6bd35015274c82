"""agent/metrics.py on hand-worked matrices, and `lifelean metrics MATRIX.json`."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from agent.evaluation import lifelong as M

NAN = math.nan

# cl-and-style.md §3.5: R (rows = after task i, columns = task j) and baseline b.
R = [[0.60, 0.30, 0.25],
     [0.50, 0.70, 0.40],
     [0.55, 0.60, 0.80]]
B = [0.10, 0.20, 0.30]


def approx(x):
    return pytest.approx(x, abs=1e-12)


def test_standard_metrics_on_worked_vector():
    A = M.as_matrix(R)
    assert M.acc(A) == approx((0.55 + 0.60 + 0.80) / 3)                       # 0.65
    assert M.bwt(A) == approx(((0.55 - 0.60) + (0.60 - 0.70)) / 2)            # -0.075
    assert M.fwt(A, B) == approx(((0.30 - 0.20) + (0.40 - 0.30)) / 2)         # +0.10
    # forgetting: j=0: max(0.60, 0.50) - 0.55 = 0.05; j=1: max(0.70) - 0.60 = 0.10 -> 0.075
    assert M.forgetting(A) == approx((0.05 + 0.10) / 2)
    assert M.forgetting(A, seen_only=True) == approx(0.075)  # j=1 no longer sees A[0][1]=0.30 < 0.70
    assert M.plasticity(A) == approx((0.60 + 0.70 + 0.80) / 3)                # 0.70
    # A_k: 0.60, (0.50+0.70)/2 = 0.60, (0.55+0.60+0.80)/3 = 0.65 -> 1.85/3
    assert M.incremental_acc(A) == approx(1.85 / 3)
    assert M.dr_acc(A) == approx((0.60 + 0.50 + 0.70 + 0.55 + 0.60 + 0.80) / 6)  # 0.625
    # pairs i>j: (1,0) 0.50-0.60, (2,0) 0.55-0.60, (2,1) 0.60-0.70 -> -0.25/3
    assert M.expanded_bwt(A) == approx(-0.25 / 3)
    assert M.dr_fwt(A) == approx((0.30 + 0.25 + 0.40) / 3)                   # 0.3167


def test_leanagent_metrics_on_worked_vector():
    A = M.as_matrix(R)
    # FM: t=1: max(A[1][0], A[1][1]) - A[2][1] = 0.70 - 0.60 = 0.10; t=2: max(row 2) - A[2][2] = 0 -> 0.05
    assert M.leanagent_fm(A) == approx(0.05)
    # IP: diagonal 0.6, 0.7, 0.8 -> diffs 0.1, 0.1
    assert M.incremental_plasticity(list(np.diag(A))) == approx(0.1)
    avg = M.average_curve(A)
    assert avg == [approx(0.60), approx(0.60), approx(0.65)]
    assert M.cfr(avg) == approx(0.60 / 0.65)
    # WP5: i=0: 0, i=1: max(0, 0.60-0.60) = 0, i=2: 0.65-0.60 = 0.05 -> 0.05/3
    assert M.windowed_plasticity(avg) == approx(0.05 / 3)
    assert M.windowed_forgetting(avg) is None  # no i >= 5 on a 3-point curve


def test_windowed_metrics_on_a_long_curve():
    avg = [0.5, 0.6, 0.7, 0.65, 0.8, 0.9, 0.6, 0.85]
    # i=5: max(avg[0:5]) - avg[5] = 0.8-0.9 = -0.1; i=6: 0.9-0.6 = 0.3; i=7: max(avg[2:7]) = 0.9 - 0.85 = 0.05
    assert M.windowed_forgetting(avg) == approx(0.3)
    # gains avg[i] - avg[max(0,i-5)]: 0, .1, .2, .15, .3, .4, 0.6-0.6=0, 0.85-0.7=.15 -> 1.3 / 8
    assert M.windowed_plasticity(avg) == approx(1.3 / 8)
    assert M.cfr(avg) == approx(0.5 / 0.9)
    assert M.windowed_forgetting([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]) == 0.0  # never drops: clipped at 0
    assert M.windowed_forgetting([0.5, 0.4, 0.3], w=2) == approx(0.5 - 0.3)   # i=2: max(.5,.4) - .3


def test_single_task_has_no_transfer_or_forgetting():
    s = M.suite([[0.4]], [0.1])
    assert s["acc"] == approx(0.4) and s["plasticity"] == approx(0.4)
    for key in ("bwt", "fwt", "forgetting", "expanded_bwt", "dr_fwt", "fm", "ip", "wf5"):
        assert s[key] is None, key
    assert s["cfr"] == approx(1.0) and s["wp5"] == 0.0


def test_missing_entries_are_skipped():
    A = M.as_matrix([[0.8, 0.1, None],
                     [0.6, 0.9, 0.2],
                     [None, 0.7, 0.5]])
    b = [0.0, 0.05, None]
    assert M.acc(A) == approx((0.7 + 0.5) / 2)           # A[2][0] missing
    assert M.bwt(A) == approx(0.7 - 0.9)                  # j=0 term undefined (final score missing)
    assert M.fwt(A, np.array(b, dtype=float)) == approx(0.1 - 0.05)  # j=2 term undefined (no baseline)
    assert M.forgetting(A) == approx(0.9 - 0.7)           # j=0 undefined; j=1: max(0.1, 0.9) - A[2][1]
    assert M.forgetting(A, seen_only=True) == approx(0.2)  # max(A[1][1]) is the same 0.9
    assert M.plasticity(A) == approx((0.8 + 0.9 + 0.5) / 3)
    s = M.suite(A, b)
    assert s["fwt"] == approx(0.05)


def test_a_metric_with_no_defined_term_is_none():
    A = M.as_matrix([[0.5, None], [None, 0.6]])
    assert M.bwt(A) is None and M.forgetting(A) is None
    assert M.fwt(A, [0.1, 0.2]) is None
    assert M.acc(M.as_matrix([[None]])) is None


def test_forgetting_seen_only_differs_when_zero_shot_beats_learning():
    A = M.as_matrix([[0.5, 0.9, 0.0],
                     [0.5, 0.6, 0.0],
                     [0.5, 0.6, 0.7]])
    # seen-only: j=0: max(.5,.5) - .5 = 0; j=1: max(A[1][1]) - .6 = 0 -> 0
    assert M.forgetting(A, seen_only=True) == approx(0.0)
    # all rows i < T-1 (the default, as the issue writes it): j=1: max(A[0][1]=.9, A[1][1]=.6) - .6 = 0.3
    assert M.forgetting(A) == approx((0.0 + 0.3) / 2)
    s = M.suite(A)
    assert (s["forgetting"], s["forgetting_seen"]) == (approx(0.15), approx(0.0))


def test_as_matrix_rejects_non_square():
    with pytest.raises(ValueError):
        M.as_matrix([[0.1, 0.2]])
    with pytest.raises(ValueError):
        M.as_matrix([[0.1, 0.2], [0.3]])
    with pytest.raises(ValueError):
        M.suite([[0.1]], [0.1, 0.2])


def test_composite_reproduces_leanagent_reported_scores():
    # LeanAgent's four single-repository setups (leanagent.md §1e): components and reported composite.
    runs = {
        "exp1": {"wf5": 7.60, "fm": 6.5344, "cfr": 0.8722, "expanded_bwt": 0.5124, "wp5": 0.8914, "ip": 0.3585},
        "leanagent": {"wf5": 0.18, "fm": 0.8455, "cfr": 0.8767, "expanded_bwt": 1.2086, "wp5": 2.4736, "ip": 1.0231},
        "exp7": {"wf5": 7.17, "fm": 4.0435, "cfr": 0.8805, "expanded_bwt": 1.0397, "wp5": 1.4729, "ip": 0.2562},
        "exp8": {"wf5": 0.73, "fm": 2.1120, "cfr": 0.8458, "expanded_bwt": 0.7563, "wp5": 3.4200, "ip": 1.0638},
    }
    got = M.composite(runs)
    reported = {"exp1": 0.1649, "leanagent": 0.9357, "exp7": 0.4736, "exp8": 0.6107}
    for name, value in reported.items():  # components are printed to 4 digits, hence the tolerance
        assert got[name] == pytest.approx(value, abs=2e-4), name


def test_composite_conventions_for_ties_and_missing_terms():
    # wf5 missing in one run -> dropped; weights left: fm .2, wp5 .1, ip .1, ebwt .2, cfr .2 (sum .8)
    runs = {"a": {"wf5": None, "fm": 1.0, "wp5": 0.0, "ip": 0.0, "expanded_bwt": 0.0, "cfr": 0.5},
            "b": {"wf5": 0.3, "fm": 0.0, "wp5": 1.0, "ip": 1.0, "expanded_bwt": 1.0, "cfr": 0.5}}
    got = M.composite(runs)
    # a: fm norm 1 -> 0; others norm 0; cfr tie -> 0.5 * 0.2 = 0.1 -> 0.1/0.8
    assert got["a"] == approx(0.1 / 0.8)
    # b: fm 1-0 = 1 -> .2; wp5 .1; ip .1; ebwt .2; cfr .1 -> 0.7/0.8
    assert got["b"] == approx(0.7 / 0.8)
    assert M.composite({"x": {"wf5": None}}) == {"x": None}


def test_json_safe_rounds_and_drops_nan():
    out = M.json_safe({"a": 1 / 3, "b": NAN, "c": [np.float64(-1e-12), np.int64(3)], "d": None})
    assert out == {"a": 0.333333333, "b": None, "c": [0.0, 3], "d": None}
    assert json.dumps(out)  # plain JSON types only


# -- CLI ------------------------------------------------------------------------------------------------

def _write(tmp_path, obj, name="m.json"):
    p = tmp_path / name
    p.write_text(obj if isinstance(obj, str) else json.dumps(obj), encoding="utf-8")
    return p


def test_cli_json_on_worked_vector(run_cli, tmp_path):
    p = _write(tmp_path, {"matrix": R, "baseline": B})
    res = run_cli("metrics", str(p), "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["acc"] == approx(0.65) and out["bwt"] == approx(-0.075) and out["fwt"] == approx(0.1)
    assert out["forgetting"] == approx(0.075) and out["forgetting_seen"] == approx(0.075)
    assert out["plasticity"] == approx(0.7)
    assert out["expanded_bwt"] == pytest.approx(-0.25 / 3, abs=1e-9)
    assert not (tmp_path / "ws").exists()  # a matrix file needs no workspace


def test_cli_without_baseline_omits_fwt_and_prints_null_not_nan(run_cli, tmp_path):
    p = _write(tmp_path, {"matrix": [[0.5, None], [0.25, None]]})
    res = run_cli("metrics", str(p), "--json")
    assert res.exit_code == 0, res.output
    assert "NaN" not in res.output
    out = json.loads(res.output)
    assert "fwt" not in out
    assert out["acc"] == approx(0.25)            # last row: 0.25, missing
    assert out["bwt"] == approx(0.25 - 0.5)      # j=0 only
    assert out["plasticity"] == approx(0.5)      # A[1][1] missing
    assert out["ip"] is None                     # diff needs both diagonal entries


def test_cli_reads_nan_and_null_as_not_evaluated(run_cli, tmp_path):
    p = _write(tmp_path, '{"matrix": [[0.5, NaN], [0.25, null]]}')
    out = json.loads(run_cli("metrics", str(p), "--json").output)
    assert out["acc"] == approx(0.25) and out["plasticity"] == approx(0.5)


def test_cli_single_task(run_cli, tmp_path):
    out = json.loads(run_cli("metrics", str(_write(tmp_path, {"matrix": [[0.4]], "baseline": [0.1]})),
                             "--json").output)
    assert out["acc"] == approx(0.4) and out["bwt"] is None and out["fwt"] is None and out["forgetting"] is None


def test_cli_human_output(run_cli, tmp_path):
    res = run_cli("metrics", str(_write(tmp_path, {"matrix": R, "baseline": B})))
    assert res.exit_code == 0
    assert "-0.0750" in res.output and "BWT" in res.output


@pytest.mark.parametrize("content, expect", [
    (None, "file not found"),
    ("{not json", "not valid JSON"),
    ({"baseline": [1]}, 'no "matrix"'),
    ('"just a string"', 'no "matrix"'),
    ('{"matrix": [[Infinity]]}', "matrix[0][0] is Infinity"),
    ({"matrix": []}, "non-empty list"),
    ({"matrix": [[0.1, 0.2], [0.3]]}, "row 1 has 1 entries, expected 2"),
    ({"matrix": [[0.1, 0.2]]}, "row 0 has 2 entries, expected 1"),
    ({"matrix": [[0.1, "x"], [0.3, 0.4]]}, 'matrix[0][1] is "x"'),
    ({"matrix": [[True]]}, "matrix[0][0] is true"),
    ({"matrix": [[0.1, 0.2], [0.3, 0.4]], "baseline": [0.1]}, "list of 2 entries"),
    ({"matrix": [[0.1]], "baseline": ["a"]}, 'baseline[0] is "a"'),
])
def test_cli_bad_matrix_file_is_one_line_exit_2(run_cli, tmp_path, content, expect):
    p = tmp_path / "bad.json" if content is None else _write(tmp_path, content, "bad.json")
    res = run_cli("metrics", str(p), "--json")
    assert res.exit_code == 2
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "bad.json" in lines[0] and expect in lines[0], res.output
