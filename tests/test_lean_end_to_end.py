"""`-m lean`: trace LeanDojo's example repository at a pinned commit and prove its theorems with each backend.

Needs elan, git, lean-dojo, lean-interact and network (GitHub); skipped where Lean is missing.
"""
from __future__ import annotations

import shutil

import pytest

pytestmark = pytest.mark.lean

URL, COMMIT = "https://github.com/yangky11/lean4-example", "7b6ecb9ad4829e4e73600a3329baeb3b5df8d23f"


@pytest.fixture(scope="module")
def traced():
    from curriculum.tracing import missing_lean_tools, trace_repository

    if missing_lean_tools() is not None or shutil.which("lake") is None:
        pytest.skip(f"no Lean here: {missing_lean_tools()}")
    return trace_repository(URL, COMMIT, None)


def test_add_records_the_traced_url_and_commit(traced):
    assert traced.url == URL and traced.commit == COMMIT and traced.theorems


@pytest.mark.parametrize("backend", ["leandojo", "lean-interact"])
def test_prove_with_each_backend(traced, backend, tmp_path):
    import subprocess

    from provers.config import ProverConfig
    from provers.factory import GeneratorSpec
    from provers.pool import ProverWorker, WorkerSpec

    project = None
    if backend == "lean-interact":
        project = tmp_path / "src"
        subprocess.run(["git", "clone", "-q", URL, str(project)], check=True)
        subprocess.run(["git", "checkout", "-q", COMMIT], cwd=project, check=True)
    cfg = ProverConfig(env="lean", lean_backend=backend, tactic_timeout=60, max_expansions=4,
                       lean_project_dir=str(project) if project else None)

    class Recorded:
        """Offers each theorem's recorded tactics: the check here is Lean's, not the generator's."""

        name = "recorded"

        def reset(self, seed):
            pass

        def generate(self, state, n, theorem=None):
            return [(t.tactic, -float(i)) for i, t in enumerate(theorem.tactics if theorem else ())][:n]

    worker = ProverWorker(WorkerSpec(GeneratorSpec(cfg), {traced.name: traced}), generator=Recorded())
    results = [worker.prove(traced.name, t) for t in traced.theorems if t.tactics]
    assert any(r.proved and r.checked_by == "lean" for r in results), [r.error for r in results]
