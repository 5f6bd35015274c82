"""`lifelean evaluate SOURCE`: score the workspace's current retriever on any dataset, next to BM25 and the
untrained encoder, and the workspace's tactic generator (tactic@1 / tactic@8, agent/evaluation/tactics.py),
without adding the dataset to the workspace: its premises go to a temporary in-memory index, and the bank and
the generator checkpoint are only read."""
from __future__ import annotations

import math
from typing import Any, Sequence

import click

from agent.commands._common import emit, json_option, workspace_root
from common.errors import InputError

SPLITS = ("test", "val", "train", "all")


class SourcePremises:
    """The source's premises as the premise store of a :class:`PremiseContext`: the temporary index retrieval is
    scored against (the frozen document tower's vectors), returning each premise with its code, as the premise
    store would, so the generator reads the same kind of context the prover builds."""

    def __init__(self, index: Any, repos: Sequence[Any]):
        self.index = index
        self._premises: dict[str, tuple[Any, Any]] = {}
        for repo in repos:
            for p in repo.premises:
                self._premises.setdefault(p.full_name, (p, repo))

    def retrieve_by_vectors(self, vectors: Any, k: int, accessible: Any = None) -> list[list[Any]]:
        from memory.premise_store import RetrievedPremise, premise_id

        out = []
        for hits in self.index.retrieve_by_vectors(vectors, k, accessible=accessible):
            row = []
            for h in hits:
                p, repo = self._premises[h.full_name]
                row.append(RetrievedPremise(premise_id(repo.name, repo.commit, p.full_name), p.full_name, p.path,
                                            repo.name, repo.commit, h.score, p.code))
            out.append(row)
        return out


def _unavailable(name: str, reason: str, **extra: Any) -> dict[str, Any]:
    return {"generator": name, "available": False, "reason": reason, "tactic@1": None, "tactic@8": None,
            "tactic_steps": 0, **extra}


def _accessibility(repos: Sequence[Any]) -> Any:
    """ReProver's accessible premises per theorem from the source's own premise files (None = unknown), as the
    prover filters retrieval."""
    from provers.factory import _accessibility as by_repository

    return by_repository({r.name: r for r in repos})


def score_generator(ws: Any, config: Any, repos: Sequence[Any], theorems: Sequence[Any], index: Any,
                    query: Any, base: Any, learned: Sequence[str], display: Any) -> dict[str, Any]:
    """tactic@1/8 of the workspace's generator on `theorems`' traced steps (sorry steps are not scored).

    knn: the workspace's memory bank (read-only), restricted to the learned repositories, as the loop's
    evaluation uses it after the last learned step. hf: `[prover] model`, or with `[learning] train_generator`
    the newest fine-tuned generator checkpoint. Both get the premise context the prover would build for the
    source: its own premises retrieved by the workspace's retriever, filtered by accessibility.
    """
    from agent.evaluation.tactics import tactic_scores
    from provers.generators.context import PremiseContext

    cfg = config.prover
    name = cfg.generator
    scored = [t for t in theorems if t.tactics and not t.is_sorry]
    if name not in ("knn", "hf"):
        return _unavailable(name, f"tactic accuracy is scored for the knn and hf generators, not {name}")
    if not scored:
        return _unavailable(name, "no traced (non-sorry) tactic steps in this split")
    context = PremiseContext(SourcePremises(index, repos), k=cfg.num_premises, budget_bytes=cfg.premise_bytes,
                             query_encoder=query, accessible=_accessibility(repos), rerank=config.memory.reranker())
    info: dict[str, Any] = {"generator": name, "available": True}
    if name == "knn":
        if not ws.exists:
            return _unavailable(name, "no workspace, so the knn generator has no memory bank")
        from agent.workspace.memory import open_bank
        from provers.generators.knn import KnnGenerator

        bank = open_bank(ws, config, base, read_only=True)
        generator = KnnGenerator(bank, base, context, k=cfg.knn_neighbours, temperature=cfg.knn_temperature,
                                 repos=list(learned))
        info.update({"memory": "bank", "bank_repos": len(learned)})
    else:
        from agent.workspace.checkpoints import current_generator_model
        from provers.generators.hf import HFGenerator

        fine_tuned = ws.exists and config.learning.train_generator
        model = current_generator_model(ws, config) if fine_tuned else cfg.model
        if not model:
            return _unavailable(name, "[prover] generator = 'hf' needs [prover] model")
        display.phase(f"loading the generator {model}")
        try:
            generator = HFGenerator.from_pretrained(model, context=context, decoding=cfg.decoding,
                                                    max_input_tokens=cfg.max_input_tokens,
                                                    max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                                                    prompt=cfg.prompt,
                                                    byte_lengths=(cfg.max_input_bytes, cfg.max_new_bytes))
        except InputError as exc:
            return _unavailable(name, str(exc), model=model)
        info.update({"model": model, "fine_tuned": bool(fine_tuned and model != cfg.model)})
    steps = sum(len(t.tactics) for t in scored)
    display.phase(f"scoring the {name} generator on {steps} tactic steps")
    scores = tactic_scores(generator, scored, config.seed)
    info.update({k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in scores.items()})
    return info


def evaluate_source(ws: Any, source: str, split: str = "test", split_by_dir: int | None = None,
                    display: Any = None, tactics: bool = True) -> dict[str, Any]:
    """{"retriever", "dense", "untrained", "bm25": {recall@1, recall@10, mrr, tactics}, "gain_over_untrained":
    {recall@10, mrr: {value, low, high, n}}, "generator": {generator, tactic@1, tactic@8, tactic_steps, ...},
    "steps": n, "rerank": mode} on SOURCE's tactics. "retriever" and "untrained" rank as the prover retrieves
    (`[memory] rerank` included); "dense" is the retriever's encoder alone, without the rerank. The gain is the
    retriever's score minus the untrained encoder's, tactic by tactic, with its 95% paired bootstrap interval:
    whether learning helped on these theorems, or the difference is noise."""
    from agent.config import RunConfig
    from agent.evaluation.bootstrap import paired_difference
    from agent.evaluation.retrieval import VectorIndex, bm25_scores, mean_scores, retrieval_items, retrieval_scores
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
    rerank = config.memory.reranker()
    display.phase(f"scoring the retriever on {len(theorems)} theorems")
    retriever_items = retrieval_items(query, index, theorems, rerank=rerank)
    retriever = mean_scores(retriever_items)
    dense = retrieval_scores(query, index, theorems) if rerank else retriever
    display.phase("scoring BM25")
    bm25 = bm25_scores(corpus.names, corpus.texts, theorems)
    display.phase("scoring the untrained encoder")
    untrained_items = retrieval_items(base, index, theorems, rerank=rerank)
    untrained = mean_scores(untrained_items)
    gain = {metric: paired_difference(retriever_items[metric], untrained_items[metric])
            for metric in ("recall@10", "mrr")}
    learned_names = list(dict.fromkeys(e.name for e in learned if not e.forgotten))
    generator = (score_generator(ws, config, repos, theorems, index, query, base, learned_names, display)
                 if tactics else _unavailable(config.prover.generator, "not scored (--no-tactics)"))
    return {
        "retriever": retriever,
        "dense": dense,
        "rerank": config.memory.rerank,
        "bm25": bm25,
        "untrained": untrained,
        "gain_over_untrained": gain,
        "generator": generator,
        "steps": len(learned),
        "split": split,
        "includes_training_theorems": split in ("train", "all"),
    }


def _render(result: dict[str, Any]) -> None:
    from agent.commands._common import echo_wrapped

    echo_wrapped(f"{result['retriever']['tactics']} tactics of split '{result['split']}'; the retriever is the "
                 f"newest checkpoint, after {result['steps']} learned repositor"
                 f"{'y' if result['steps'] == 1 else 'ies'}"
                 + (", its candidates reranked with BM25 as the prover's are ('dense': without the rerank)"
                    if result.get("rerank", "none") != "none" else ""))
    click.echo(f"{'':<12}{'Recall@1':>10}{'Recall@10':>11}{'MRR':>8}")
    if result.get("includes_training_theorems"):
        click.echo("note: this split includes training theorems; scores on them are not held-out scores")
    rows = ("retriever", "dense", "untrained", "bm25") if result.get("rerank", "none") != "none" else (
        "retriever", "untrained", "bm25")
    for name in rows:
        s = result[name]
        click.echo(f"{name:<12}{s['recall@1']:>10.3f}{s['recall@10']:>11.3f}{s['mrr']:>8.3f}")
    gain = result.get("gain_over_untrained") or {}
    shown = [f"{label} {v['value']:+.3f} (95% {v['low']:+.3f}..{v['high']:+.3f})"
             for label, v in (("Recall@10", gain.get("recall@10")), ("MRR", gain.get("mrr")))
             if v and v["low"] is not None]
    if shown:
        echo_wrapped("retriever − untrained, tactic by tactic: " + ", ".join(shown)
                     + " (paired bootstrap over the tactics: training helped where the interval is above 0)")
    g = result.get("generator") or {}
    if not g.get("available"):
        echo_wrapped(f"generator {g.get('generator', '?')}: tactic accuracy unavailable ({g.get('reason', '')})")
        return
    if g["generator"] == "knn":
        n = g.get("bank_repos", 0)
        source = f"memory bank of {n} learned repositor{'y' if n == 1 else 'ies'}"
    else:
        source = f"model {g['model']}" + (" (newest fine-tuned checkpoint)" if g.get("fine_tuned") else "")
    fmt = (lambda v: "n/a" if v is None else f"{v:.3f}")   # noqa: E731
    echo_wrapped(f"generator {g['generator']} ({source}): tactic@1 {fmt(g['tactic@1'])}, tactic@8 "
                 f"{fmt(g['tactic@8'])} on {g['tactic_steps']} tactic steps")


@click.command("evaluate")
@click.argument("source")
@click.option("--split", type=click.Choice(SPLITS), default="test", show_default=True,
              help="Which theorems' tactics to score.")
@click.option("--split-by-dir", type=int, default=None, help="Split the dataset into one repository per leading "
              "directory (N path components), as `lifelean add` does.")
@click.option("--tactics/--no-tactics", default=True, show_default=True,
              help="Also score the generator's tactic@1 / tactic@8 (an `hf` model on CPU can take a while).")
@json_option
@click.pass_context
def evaluate(ctx: click.Context, source: str, split: str, split_by_dir: int | None, tactics: bool,
             as_json: bool) -> None:
    """Score the retriever on SOURCE next to BM25 and the untrained encoder, and the workspace's tactic
    generator (read-only; no lock needed, and nothing is written: no log file either). Every ranker reads
    the same query: each proof state with its theorem's name and file, as the prover asks. The retriever
    and the untrained encoder rank as the prover does, their top 100 reranked with BM25 (`[memory]
    rerank`); the `dense` row is the retriever's encoder alone. What learning gained is the retriever's
    score minus the untrained encoder's, tactic by tactic, with a 95% paired bootstrap interval: above 0,
    training helped on these theorems; around 0, the difference is noise.

    Generator: tactic@k is the share of SOURCE's traced tactic steps whose recorded tactic is among the
    generator's top k suggestions for the recorded state (exact up to whitespace; k = 1, 8). `knn` proposes
    tactics from the workspace's memory bank, restricted to the learned repositories (unavailable without a
    workspace); `hf` runs `[prover] model`, or the newest fine-tuned checkpoint with `[learning]
    train_generator`. Its premise context is SOURCE's own premises, retrieved by the workspace's retriever
    (the premises are not in the workspace's store).

    \b
    Example:
      lifelean -w ~/lifelean-demo evaluate /path/to/leandojo_b4_sample --split test
      lifelean -w ~/lifelean-demo evaluate /path/to/dataset --split-by-dir 2 --json
    """
    from agent.commands.progress import Progress

    ws = workspace_root(ctx)
    with Progress(enabled=not as_json) as display:
        result = evaluate_source(ws, source, split, split_by_dir, display, tactics=tactics)
    emit(result, as_json, _render)
