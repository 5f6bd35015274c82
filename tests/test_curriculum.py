"""LeanAgent's difficulty rule and both orderings, checked against numpy on e^S directly."""
from __future__ import annotations

import math

import numpy as np
import pytest

from common.errors import InputError
from curriculum.difficulty import compute_thresholds, log_percentile, rate_repository
from curriculum.graph import file_graph, premise_usage_graph, repository_graph
from curriculum.ordering import order_repositories
from tests.helpers import premise_file, repo


@pytest.mark.parametrize("values", [[1, 2, 3], [1, 1, 5, 9], [3], [2, 7, 7, 8, 20, 30]])
def test_log_percentile_matches_numpy_on_exp(values):
    for q in (33, 67):
        expected = math.log(np.percentile(np.exp(np.array(values, dtype=float)), q))
        assert log_percentile(values, q) == pytest.approx(expected, rel=1e-12)


def test_no_overflow_for_long_proofs():
    # e^800 overflows a float; the log-space percentile must not.
    value = log_percentile([1.0, 800.0, 1000.0], 67)
    assert math.isfinite(value) and 800 < value < 1000
    th = compute_thresholds([repo("long", [900, 1000, 1200, 5])])
    assert th.p33_steps is not None and math.isfinite(th.p67_steps)


def test_categories_with_hand_computed_thresholds():
    # S values 1..6 in one repo: p33 of e^S = e^2 + 0.65(e^3 - e^2), p67 = e^4 + 0.35(e^5 - e^4).
    r = repo("r", [1, 2, 3, 4, 5, 6])
    th = compute_thresholds([r])
    assert math.exp(th.p33_steps) == pytest.approx(math.e**2 + 0.65 * (math.e**3 - math.e**2))
    assert math.exp(th.p67_steps) == pytest.approx(math.e**4 + 0.35 * (math.e**5 - math.e**4))
    rated = rate_repository(r, th)
    # easy: S <= 2.x -> {1, 2}; medium: {3, 4}; hard: {5, 6}
    assert (rated.easy, rated.medium, rated.hard) == (2, 2, 2)


def test_sorry_is_hard_and_unrated_split_in_thirds():
    r = repo("r", [1, 1, 1, None, None, None, None, None], sorry=2)
    th = compute_thresholds([r])
    rated = rate_repository(r, th)
    # 3 rated (all S=1: thresholds 1 -> easy), 5 unrated -> 1, 1, 3; 2 sorry -> hard.
    assert (rated.easy, rated.medium, rated.hard) == (3 + 1, 0 + 1, 0 + 3 + 2)
    assert rated.unrated == 5 and rated.sorry == 2


def test_all_sorry_and_all_unrated():
    all_sorry = repo("s", [], sorry=4)
    th = compute_thresholds([all_sorry])
    assert th.p33_steps is None and th.p67_steps is None
    assert rate_repository(all_sorry, th).hard == 4
    unrated = repo("u", [None] * 7)
    th = compute_thresholds([unrated])
    rated = rate_repository(unrated, th)
    assert (rated.easy, rated.medium, rated.hard) == (2, 2, 3)


def test_infinities_stay_out_of_percentiles():
    # LeanAgent would put inf into np.percentile and get inf/NaN thresholds here.
    r = repo("r", [1, 2, 3], sorry=10)
    th = compute_thresholds([r])
    assert math.isfinite(th.p33_steps) and math.isfinite(th.p67_steps)


def test_leanagent_order_by_easy_desc_ties_keep_added_order():
    a = repo("a", [5, 5, 5])          # 0 easy
    b = repo("b", [1, 1, 5])          # 2 easy
    c = repo("c", [1, 1, 5])          # 2 easy, tie with b, added later
    d = repo("d", [1])                # 1 easy
    cur = order_repositories([a, b, c, d])
    assert [r.name for r in cur.repos] == ["b", "c", "d", "a"]


def test_one_repository():
    cur = order_repositories([repo("only", [1, 2, 3])])
    assert cur.order == ["only@" + "a" * 12]


def test_dependency_order_and_easy_first_within_generation():
    lib = repo("lib", [9, 9])                      # hard, but others need it
    app = repo("app", [1, 1, 1], deps=("lib",))
    other = repo("other", [1, 1, 1, 1])
    cur = order_repositories([lib, app, other], "dependency")
    assert [r.name for r in cur.repos] == ["other", "lib", "app"]
    assert "after lib" in cur.reasons[app.key]
    assert [r.name for r in order_repositories([lib, app, other]).repos] == ["other", "app", "lib"]


def test_dependency_from_shared_imports_and_cycles():
    base = repo("base", [1], files=(premise_file("Base/A.lean", ["Base.x"], []),))
    user = repo("user", [1, 1], files=(premise_file("User/A.lean", ["User.y"], ["Base/A.lean"]),))
    assert repository_graph([base, user]).has_edge(base.key, user.key)
    assert order_repositories([user, base], "dependency").order == [base.key, user.key]
    x = repo("x", [1], deps=("y",))
    y = repo("y", [1], deps=("x",))
    with pytest.raises(InputError, match="cycle: .*x.*y|cycle: .*y.*x"):
        order_repositories([x, y], "dependency")


def test_file_and_premise_usage_graphs(b4_sample):
    from curriculum.lean_data import load_dataset, to_repositories

    files = (premise_file("A.lean", ["a"], []), premise_file("B.lean", ["b"], ["A.lean"]),
             premise_file("C.lean", ["c"], None))
    g = file_graph([repo("r", [1], files=files)])
    assert list(g.edges) == [("A.lean", "B.lean")] and "C.lean" in g
    repos = to_repositories(load_dataset(b4_sample), split_by_dir=2)
    usage = premise_usage_graph(repos)
    n_annotations = sum(len(t.annotations) for r in repos for th in r.theorems for t in th.tactics)
    assert sum(d["uses"] for _, _, d in usage.edges(data=True)) == n_annotations


def test_real_sample_counts_match_an_independent_hand_computation(b4_sample):
    """Recompute the curriculum from the raw JSON files with plain numpy on e^S, as a person would."""
    import json

    from curriculum.lean_data import load_dataset, to_repositories

    records = [r for s in ("train", "val", "test") for r in json.loads((b4_sample / "random" / f"{s}.json").read_text())]
    steps = [len(r["traced_tactics"]) for r in records if r["traced_tactics"]]  # no sorry in the sample
    p33, p67 = np.percentile(np.exp(np.array(steps, dtype=float)), [33, 67])
    by_dir: dict[str, list[dict]] = {}
    for r in records:
        by_dir.setdefault("/".join(r["file_path"].split("/")[:2]), []).append(r)
    expected = {}
    for name, recs in by_dir.items():
        easy = sum(1 for r in recs if r["traced_tactics"] and math.exp(len(r["traced_tactics"])) <= p33)
        medium = sum(1 for r in recs if r["traced_tactics"] and p33 < math.exp(len(r["traced_tactics"])) <= p67)
        hard = sum(1 for r in recs if r["traced_tactics"] and math.exp(len(r["traced_tactics"])) > p67)
        n = sum(1 for r in recs if not r["traced_tactics"])
        expected[name] = (len(recs), easy + n // 3, medium + n // 3, hard + n - 2 * (n // 3), n)
    cur = order_repositories(to_repositories(load_dataset(b4_sample), split_by_dir=2))
    assert math.exp(cur.p33_steps) == pytest.approx(p33) and math.exp(cur.p67_steps) == pytest.approx(p67)
    got = {r.name: (r.theorems, r.easy, r.medium, r.hard, r.unrated) for r in cur.repos if r.theorems}
    assert got == expected
    easy_counts = [r.easy for r in cur.repos]
    assert easy_counts == sorted(easy_counts, reverse=True)
