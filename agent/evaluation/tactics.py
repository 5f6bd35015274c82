"""Tactic accuracy: how well the generator predicts held-out human tactics (issue 10, item 5).

For every traced step of the held-out theorems, the generator is asked for its top-k tactics at the recorded
state (with the same premise context the prover uses); a step counts at k when the recorded tactic is among them,
exact up to whitespace (`provers.env.normalize`). Reported for k = 1 and 8 as `tactic@1` / `tactic@8`, means over
steps, NaN without steps. This is the generator's counterpart of Recall@k (ReProver reports the same top-k
exact-match accuracy for its tactic generator, Yang et al. 2023, §5). Each theorem re-seeds the generator with
its scheduling-independent seed, so scores are deterministic.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

KS = (1, 8)


def tactic_scores(generator: Any, theorems: Iterable[Any], seed: int, ks: Sequence[int] = KS) -> dict[str, float]:
    from provers.env import normalize
    from provers.pool import theorem_seed

    hits = {k: 0 for k in ks}
    steps = 0
    for thm in theorems:
        generator.reset(theorem_seed(seed, thm.uid))
        for tac in thm.tactics:
            wanted = normalize(tac.tactic)
            proposed = [normalize(t) for t, _ in generator.generate(tac.state_before, max(ks), thm)]
            steps += 1
            for k in ks:
                hits[k] += wanted in proposed[:k]
    out = {f"tactic@{k}": (hits[k] / steps if steps else math.nan) for k in ks}
    out["tactic_steps"] = steps
    return out
