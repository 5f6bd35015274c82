"""`lifelean evaluate SOURCE`: score the workspace's current retriever on any dataset, next to BM25 and the
untrained encoder, without adding the dataset to the workspace (its premises go to a temporary collection)."""
from __future__ import annotations

from typing import Any

import click

from agent.commands._common import emit, json_option, workspace_root
from common.errors import InputError

SPLITS = ("test", "val", "train", "all")


def evaluate_source(ws: Any, source: str, split: str = "test", split_by_dir: int | None = None,
                    display: Any = None) -> dict[str, Any]:
    """{"retriever", "bm25", "untrained": {recall@1, recall@10, mrr, tactics}, "steps": n} on SOURCE's tactics."""
    from agent.config import RunConfig
    from agent.evaluation.retrieval import VectorIndex, bm25_scores, retrieval_scores
    from agent.learn.retriever import Corpus
    from agent.workspace.checkpoints import load_query_encoder
    from agent.workspace.memory import base_encoder
    from curriculum.sources import load_source, parse_source

    from agent.commands.progress import Progress

    display = display if display is not None else Progress(enabled=False)
    display.phase(f"reading {source}")
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
    display.phase(f"loading the encoder {config.memory.encoder} and the newest checkpoint")
    base = base_encoder(config)
    query = load_query_encoder(ws, config) if exists else base
    learned = [e for e in ws.load_state().started() if e.done("learn")] if exists else []
    display.phase(f"embedding {len(corpus)} premises")
    index = VectorIndex.build(corpus.names, corpus.texts, base)   # the frozen document tower, as in the store
    display.phase(f"scoring the retriever on {len(theorems)} theorems")
    retriever = retrieval_scores(query, index, theorems)
    display.phase("scoring BM25")
    bm25 = bm25_scores(corpus.names, corpus.texts, theorems)
    display.phase("scoring the untrained encoder")
    untrained = retrieval_scores(base, index, theorems)
    return {
        "retriever": retriever,
        "bm25": bm25,
        "untrained": untrained,
        "steps": len(learned),
        "split": split,
        "includes_training_theorems": split in ("train", "all"),
    }


def _render(result: dict[str, Any]) -> None:
    from agent.commands._common import echo_wrapped

    echo_wrapped(f"{result['retriever']['tactics']} tactics of split '{result['split']}'; the retriever is the "
                 f"newest checkpoint, after {result['steps']} learned repositor"
                 f"{'y' if result['steps'] == 1 else 'ies'}")
    click.echo(f"{'':<12}{'Recall@1':>10}{'Recall@10':>11}{'MRR':>8}")
    if result.get("includes_training_theorems"):
        click.echo("note: this split includes training theorems; scores on them are not held-out scores")
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
    """Score the retriever on SOURCE next to BM25 and the untrained encoder (read-only; no lock needed, and
    nothing is written: no log file either).

    \b
    Example:
      lifelean -w ~/lifelean-demo evaluate /path/to/leandojo_b4_sample --split test
      lifelean -w ~/lifelean-demo evaluate /path/to/dataset --split-by-dir 2 --json
    """
    from agent.commands.progress import Progress

    ws = workspace_root(ctx)
    with Progress(enabled=not as_json) as display:
        result = evaluate_source(ws, source, split, split_by_dir, display)
    emit(result, as_json, _render)
