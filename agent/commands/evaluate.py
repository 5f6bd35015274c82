"""`lifelean evaluate SOURCE`: score the workspace's current retriever on any dataset, next to BM25 and the
untrained encoder, without adding the dataset to the workspace (its premises go to a temporary collection)."""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import click

from agent.commands._common import emit, json_option, workspace_root
from common.errors import InputError

SPLITS = ("test", "val", "train", "all")


def evaluate_source(ws: Any, source: str, split: str = "test", split_by_dir: int | None = None) -> dict[str, Any]:
    """{"retriever", "bm25", "untrained": {recall@1, recall@10, mrr, tactics}, "steps": n} on SOURCE's tactics."""
    from agent.config import RunConfig
    from agent.evaluate import bm25_scores, retrieval_scores
    from agent.learning import checkpoints, document_encoder, load_query_encoder
    from agent.memory_ops import base_encoder
    from agent.retriever import Corpus
    from curriculum.sources import load_source, parse_source
    from memory.premise_store import PremiseStore

    repos = load_source(parse_source(source), split_by_dir=split_by_dir)
    splits = ("train", "val", "test", None) if split == "all" else (split,)
    theorems = [t for r in repos for t in r.theorems if t.split in splits]
    corpus = Corpus.from_repositories(repos)
    if not len(corpus):
        raise InputError(f"{source}: the dataset has no premise corpus (corpus.jsonl), so retrieval cannot be scored")
    if not any(t.tactics for t in theorems):
        raise InputError(f"{source}: no traced tactics in split '{split}'; try --split all")
    exists = ws.exists
    config = ws.config() if exists else RunConfig()
    base = base_encoder(config)
    query = load_query_encoder(ws, config) if exists else base
    doc = document_encoder(config, query)
    with tempfile.TemporaryDirectory(prefix="lifelean-eval-") as tmp:
        stores: dict[str, Any] = {}
        for enc in {doc.version: doc, base.version: base}.values():
            store = PremiseStore(Path(tmp) / enc.version.replace("@", "-"), enc)
            for r in repos:
                store.add_repo(r)
            stores[enc.version] = store
        result = {
            "retriever": retrieval_scores(query, stores[doc.version], theorems),
            "bm25": bm25_scores(corpus.names, corpus.texts, theorems),
            "untrained": retrieval_scores(base, stores[base.version], theorems),
            "steps": len(checkpoints(ws)) if exists else 0,
        }
    return result


def _render(result: dict[str, Any]) -> None:
    click.echo(f"{'':<12}{'Recall@1':>10}{'Recall@10':>11}{'MRR':>8}   ({result['retriever']['tactics']} tactics, "
               f"retriever after {result['steps']} learning steps)")
    for name in ("retriever", "untrained", "bm25"):
        s = result[name]
        click.echo(f"{name:<12}{s['recall@1']:>10.3f}{s['recall@10']:>11.3f}{s['mrr']:>8.3f}")


@click.command("evaluate")
@click.argument("source")
@click.option("--split", type=click.Choice(SPLITS), default="test", show_default=True,
              help="Which theorems' tactics to score.")
@click.option("--split-by-dir", type=int, default=None, help="Split the dataset into one repository per leading "
              "directory (N path components), as `lifelean add` does.")
@json_option
@click.pass_context
def evaluate(ctx: click.Context, source: str, split: str, split_by_dir: int | None, as_json: bool) -> None:
    """Score the retriever on SOURCE next to BM25 and the untrained encoder (read-only; no lock needed)."""
    ws = workspace_root(ctx)
    emit(evaluate_source(ws, source, split, split_by_dir), as_json, _render)
