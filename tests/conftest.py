"""Shared fixtures. Real data is read from ../shared/data (never copied into the repo)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """`../shared/data`: real traced LeanDojo Benchmark 4 records (see its SOURCE.md)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is not present (it lies beside the repository)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def b4_sample(shared_data: Path) -> Path:
    return shared_data / "leandojo_b4_sample"


@pytest.fixture(scope="session")
def tiny_theorems(shared_data: Path) -> Path:
    return shared_data / "tiny_theorems"


@pytest.fixture(scope="session")
def encoder():
    """The real all-MiniLM-L6-v2 encoder, loaded once per test process (about 5 s)."""
    import torch

    torch.set_num_threads(1)
    from memory.embedder import Encoder

    return Encoder.load()


@pytest.fixture
def cli_runner():
    from click.testing import CliRunner

    return CliRunner()


@pytest.fixture
def run_cli(cli_runner, tmp_path):
    """Invoke `lifelean -w <tmp workspace> ARGS` in-process; returns click's Result."""
    from agent.cli import cli

    def invoke(*args: str, workspace: Path | None = None):
        ws = workspace or (tmp_path / "ws")
        return cli_runner.invoke(cli, ["-w", str(ws), *args], catch_exceptions=True)

    return invoke


@pytest.fixture(scope="module")
def repos(b4_sample):
    """The sample as pseudo-repositories (`--split-by-dir 2`), by name."""
    from curriculum.lean_data import load_dataset, to_repositories

    return {r.name: r for r in to_repositories(load_dataset(b4_sample), split_by_dir=2)}


@pytest.fixture(scope="module")
def corpus(repos):
    """Two repositories' premises (~350): enough negatives for training tests, embedded once per module."""
    from agent.learn.retriever import Corpus

    return Corpus.from_repositories([repos["Mathlib/Data"], repos["Mathlib/Algebra"]])
