"""Each repository's premise table with its stored vectors in a file beside the premise store
(memory/premise_vectors.py): the learn step's corpus reads the files instead of parsing every repository and asking
chroma row by row, gets exactly what it got before, and falls back whenever a file does not match the import."""
from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture()
def indexed(tmp_path, b4_sample):
    """A workspace with two small repositories of the sample indexed (32-token encoder: fast)."""
    from agent.config import RunConfig
    from agent.workspace import SourceRecord, Workspace
    from agent.workspace.memory import index_repositories
    from agent.workspace.stream import register_repositories
    from curriculum.lean_data import load_dataset, to_repositories

    repos = {r.name: r for r in to_repositories(load_dataset(b4_sample), split_by_dir=2)}
    chosen = [repos["Mathlib/SetTheory"], repos["Mathlib/Logic"]]
    ws = Workspace.open(tmp_path / "ws", create=True)
    config = RunConfig()
    config.memory.max_length = 32
    ws.save_config(config)
    state = ws.load_state()
    register_repositories(ws, state, chosen, SourceRecord("test", "dataset", {}))
    ws.save_state(state)
    index_repositories(ws, state, chosen, config=config)
    return ws, config, state, chosen


def corpus_vectors(ws, config, state) -> np.ndarray:
    from agent.loop.context import LoopContext
    from agent.workspace.memory import base_encoder

    return LoopContext(ws, config, state).corpus().vectors(base_encoder(config)).numpy()


def test_the_corpus_comes_from_the_files_as_it_came_from_the_repositories_and_the_store(indexed, monkeypatch):
    import agent.workspace.memory as workspace_memory
    from agent.learn.retriever import Corpus
    from agent.loop.context import LoopContext
    from agent.workspace import Workspace
    from agent.workspace.memory import base_encoder, open_store

    ws, config, state, repos = indexed
    assert all(ws.premise_vectors_path(r.key).is_file() for r in repos)
    keys = sorted(r.key for r in repos)
    expected = Corpus.from_repositories(ws.load_repository(k) for k in keys)
    stored = open_store(ws, config).embeddings(expected.ids)

    def forbidden(*args, **kwargs):
        raise AssertionError("the corpus parsed a repository or opened the store although every file matched")

    monkeypatch.setattr(workspace_memory, "open_store", forbidden)
    monkeypatch.setattr(Workspace, "load_repository", forbidden)
    corpus = LoopContext(ws, config, state).corpus()
    assert (corpus.names, corpus.texts, corpus.paths, corpus.ids) == \
        (expected.names, expected.texts, expected.paths, expected.ids)
    assert np.array_equal(corpus.vectors(base_encoder(config)).numpy(), stored)   # the store's own, bit for bit


def test_a_file_that_does_not_match_the_import_is_ignored(indexed):
    from memory.premise_vectors import read_table, source_digest, write_table

    ws, config, state, repos = indexed
    expected = corpus_vectors(ws, config, state)
    first, second = (ws.premise_vectors_path(r.key) for r in repos)
    source = source_digest(ws.repo_data_path(repos[0].key))
    version = str(np.load(first)["encoder"])
    table = read_table(first, version, source)
    assert table is not None and read_table(first, "another-encoder", source) is None
    zeros = type(table)(table.ids, table.names, table.texts, table.paths, np.zeros_like(table.vectors))
    write_table(first, zeros, version, "the digest of another import")
    write_table(second, zeros, "another-encoder", source)
    assert np.array_equal(corpus_vectors(ws, config, state), expected)
    first.write_bytes(b"not a numpy file")   # unreadable: the repository and the store answer too
    assert np.array_equal(corpus_vectors(ws, config, state), expected)


def test_forgetting_a_repository_removes_its_file(indexed):
    from agent.workspace.memory import forget

    ws, config, state, repos = indexed
    forget(ws, repos[0].name, config=config)
    assert not ws.premise_vectors_path(repos[0].key).exists()
    assert ws.premise_vectors_path(repos[1].key).is_file()
