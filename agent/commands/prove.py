"""`lifelean prove`: search for proofs of named theorems, or of a repository's open theorems."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import click

from agent.commands._common import emit, json_option, workspace_from
from common.errors import InputError

from provers import CHECKED_BY_TEXT as CHECKED_TEXT

# What a result means next to where its theorem comes from (issue "Results you can trust", item 13).
PROVENANCE = {"train": "in the training data: its recorded proof is in the bank",
              "val": "held-out (val): the result is not banked", "test": "held-out (test): the result is not banked"}


def _find_repo(repos: list, name: str):
    for r in repos:
        if name in (r.name, r.key):
            return r
    known = ", ".join(sorted(r.name for r in repos)) or "none (run `lifelean add SOURCE` first)"
    raise InputError(f"no repository named '{name}' in this workspace; known repositories: {known}")


def select_targets(repos: list, names: tuple[str, ...], repo_name: str | None) -> list[tuple[Any, Any]]:
    """(repository, theorem) pairs to attempt; unknown theorem names are one error naming all of them."""
    from agent.proving import open_theorems

    pool = [_find_repo(repos, repo_name)] if repo_name else repos
    if not names:
        return [(r, t) for r in pool for t in open_theorems(r)]
    targets, missing = [], []
    for name in names:
        found = [(r, t) for r in pool for t in r.theorems if name in (t.full_name, t.uid)]
        if found:
            targets.extend(found[:1] if any(t.uid == name for _, t in found) else found)
        else:
            missing.append(name)
    if missing:
        from agent.commands._common import did_you_mean

        where = f" in repository '{repo_name}'" if repo_name else ""
        known = [t.full_name for r in pool for t in r.theorems]
        hints = []
        for name in missing:
            close = did_you_mean(name, known)
            if not close:  # a bare name of a namespaced theorem: `mem_dedup` for `List.mem_dedup`
                close = sorted({k for k in known if k.rsplit(".", 1)[-1] == name.rsplit(".", 1)[-1]})[:3]
            if close:
                hints.append(f"{name}: did you mean {' or '.join(close)}?")
        raise InputError(f"theorem(s) not found{where}: {', '.join(missing)}"
                         + (f" ({'; '.join(hints)})" if hints else ""))
    return targets


def provenance(theorem: Any) -> str:
    """Where a target comes from, said next to its result (open theorems are the only ones banked)."""
    if theorem.is_sorry and theorem.split not in ("val", "test"):
        return "open theorem: a proof found is banked"
    return PROVENANCE.get(theorem.split or "", "not in any split: the result is not banked")


def _json_row(r, theorem: Any) -> dict[str, Any]:
    split = theorem.split
    return {"theorem": r.theorem, "repo": r.repo, "proved": r.proved, "checked_by": r.checked_by,
            "proof": r.proof, "expansions": r.expansions, "seconds": round(r.seconds, 3), "split": split,
            "stop_reason": r.stop_reason,
            "provenance": provenance(theorem)}


def _summary(results: list) -> dict[str, Any]:
    proved = [r for r in results if r.proved]
    return {"attempted": len(results), "proved": len(proved),
            "not_replayable": sum(1 for r in results if r.stop_reason == "not_replayable"),
            "proof_rate": len(proved) / len(results) if results else None,
            "checked_by": sorted({r.checked_by for r in results if r.checked_by}),
            "seconds": round(sum(r.seconds for r in results), 3),
            "expansions": sum(r.expansions for r in results)}


def _render(data: dict[str, Any]) -> None:
    """One result per paragraph, wrapped at word boundaries to the terminal (80 columns when piped)."""
    from agent.commands._common import echo_wrapped

    for row in data["results"]:
        mark = "proved" if row["proved"] else ("no-replay" if row["stop_reason"] == "not_replayable" else "failed")
        how = f"; {CHECKED_TEXT.get(row['checked_by'], row['checked_by'])}" if row["proved"] else ""
        echo_wrapped(f"{mark:6}  {row['repo']}: {row['theorem']}", subsequent="          ")
        echo_wrapped(f"({row['expansions']} expansions, {row['seconds']:.2f} s{how}); {row['provenance']}",
                     indent="        ", subsequent="        ")
        if row["proved"]:
            for tactic in row["proof"]:
                click.echo("          " + tactic.replace("\n", "\n          "))
    s = data["summary"]
    how = "; ".join(CHECKED_TEXT.get(c, c) for c in s["checked_by"])
    echo_wrapped(f"proved {s['proved']}/{s['attempted']} theorems" + (f" ({how})" if how else ""))
    if s["not_replayable"]:
        echo_wrapped(f"{s['not_replayable']} theorem(s) cannot be checked by replay: their recorded trace does not "
                     "start at the theorem's own goal (use --env lean)")
    for line in data.get("export", []):
        echo_wrapped(line)


@click.command(context_settings={"show_default": True})
@click.argument("theorems", nargs=-1)
@click.option("--repo", "repo_name", default=None, help="Repository name; alone: attempt its open (sorry) "
              "theorems.")
@click.option("--generator", type=click.Choice(["knn", "hf", "vllm"]), default=None,
              help="Tactic generator [default: prover.generator of lifelean.toml].")
@click.option("--model", default=None, help="Model for 'hf'/'vllm' (Hugging Face id or local path).")
@click.option("--vllm-url", default=None, help="OpenAI-compatible vLLM server, e.g. http://127.0.0.1:8000/v1.")
@click.option("--env", "env_kind", type=click.Choice(["replay", "lean"]), default=None,
              help="Check tactics by replay of the recorded trace, or in Lean via LeanDojo.")
@click.option("--budget", type=int, default=None, help="Node expansions per theorem.")
@click.option("--timeout", type=float, default=None, help="Wall-clock seconds per theorem.")
@click.option("--tactics", "num_tactics", type=int, default=None, help="Tactics asked of the generator per node.")
@click.option("--workers", type=int, default=None, help="Prover processes (0 = sized to the machine).")
@click.option("--ray", "ray_address", default=None, metavar="auto|ADDRESS|local",
              help="Spread proving over a Ray cluster (ray.util.ActorPool).")
@click.option("--export", "export_dir", type=click.Path(file_okay=False), default=None,
              help="Write a patch per Lean file replacing `sorry` by the Lean-checked proofs found.")
@click.option("--source", "source_dir", type=click.Path(file_okay=False, exists=True), default=None,
              help="Checkout of the repository at the traced commit (for --export) [default: its URL if local].")
@json_option
@click.pass_context
def prove(ctx: click.Context, theorems: tuple[str, ...], repo_name: str | None, generator: str | None,
          model: str | None, vllm_url: str | None, env_kind: str | None, budget: int | None, timeout: float | None,
          num_tactics: int | None, workers: int | None, ray_address: str | None, export_dir: str | None,
          source_dir: str | None, as_json: bool) -> None:
    """Search for proofs of THEOREMS (full names or uids), or of a repository's open theorems.

    Results are appended to proofs.jsonl as they finish (as ad-hoc results: run summaries and the accuracy
    matrices never count them). Only proofs of open (sorry) theorems enter the memory bank; a held-out theorem's
    proof never does. With the default replay environment a proof is checked by replay of the recorded Lean
    trace, not by Lean.

    With no THEOREMS, attempts the open (sorry) theorems of every repository (of --repo's with --repo)
    and says so first.

    \b
    Example:
      lifelean -w ~/lifelean-demo prove List.mem_dedup --json
      lifelean -w ~/lifelean-demo prove --repo Mathlib/Data --budget 128
    """
    from agent.proving import bankable_records, proof_record, prove_theorems, remember_proofs

    ws = workspace_from(ctx)
    with ws.lock():
        config = ws.config()
        overrides = {k: v for k, v in {"generator": generator, "model": model, "vllm_url": vllm_url, "env": env_kind,
                                        "max_expansions": budget, "timeout": timeout, "num_tactics": num_tactics,
                                        "workers": workers, "ray_address": ray_address}.items() if v is not None}
        try:
            config.prover = dataclasses.replace(config.prover, **overrides)
        except ValueError as exc:
            raise InputError(str(exc)) from None
        repos = ws.load_repositories(ws.load_state().live())
        if not repos:
            raise InputError(f"{ws.root}: no repositories yet; run `lifelean add SOURCE` first")
        targets = select_targets(repos, theorems, repo_name)
        if not targets:
            raise InputError("nothing to prove: no open (sorry) theorems; name theorems explicitly "
                             "(e.g. `lifelean prove THEOREM`)")
        by_name = {r.name: r for r in repos}
        results = []
        groups: dict[str, list] = {}
        for r, t in targets:
            groups.setdefault(r.name, []).append(t)
        from agent.commands.progress import Progress

        with Progress(enabled=not as_json) as display:
            display.attach_log(ws.root / "logs", "prove")
            if not theorems:
                display.line(f"proving {len(targets)} theorem(s) of {len(groups)} repositor"
                             f"{'y' if len(groups) == 1 else 'ies'} (no THEOREMS given: "
                             f"{'the repository' if repo_name else 'every repository'}'s open theorems)")
            display.outer(len(groups), "proving")
            proved = 0
            for k, (name, thms) in enumerate(groups.items(), 1):
                display.outer_update(f"[{k}/{len(groups)}] {name}")
                display.inner("theorems", len(thms))
                counts = {"done": 0, "proved": 0}

                def on_result(result: Any) -> None:
                    counts["done"] += 1
                    counts["proved"] += bool(result.proved)
                    display.inner_advance(info=f"proved {counts['proved']}/{counts['done']}")
                    display.detail(f"  {'proved' if result.proved else 'failed'} {result.theorem}")

                found = prove_theorems(ws, config, by_name[name], thms, repositories=by_name, purpose="adhoc",
                                       on_result=on_result)
                remember_proofs(ws, config, by_name[name], bankable_records(by_name[name],
                                                                             [proof_record(r) for r in found]))
                results += found
                proved += counts["proved"]
                display.outer_advance()
                display.line(f"✓ [{k}/{len(groups)}] {name}: proved {counts['proved']}/{len(thms)}")
        theorem_of = {t.uid: t for _, t in targets}
        data: dict[str, Any] = {"results": [_json_row(r, theorem_of[r.uid]) for r in results],
                                "summary": _summary(results)}
        if export_dir is not None:
            data["export"] = _export(results, targets, by_name, Path(export_dir), source_dir,
                                     backend=config.prover.lean_backend)
    emit(data, as_json, _render)


def _export(results: list, targets: list, by_name: dict, out_dir: Path, source_dir: str | None,
            backend: str = "auto") -> list[str]:
    """Patches for Lean-checked proofs of sorry theorems; says plainly when there are none and why."""
    from provers.export import export_patches

    theorem_of = {t.uid: t for _, t in targets}
    lean = [(theorem_of[r.uid], r.proof) for r in results
            if r.proved and r.checked_by == "lean" and theorem_of[r.uid].is_sorry]
    replay_only = sum(1 for r in results if r.proved and r.checked_by != "lean" and theorem_of[r.uid].is_sorry)
    lines = []
    if replay_only:
        lines.append(f"export: {replay_only} sorry proof(s) were only checked by replay and are not exported; "
                     "rerun with --env lean to check them in Lean")
    if not lean:
        lines.append("export: no Lean-checked proofs of sorry theorems to export")
        return lines
    by_repo: dict[str, list] = {}
    for r in results:
        if r.proved and r.checked_by == "lean" and theorem_of[r.uid].is_sorry:
            by_repo.setdefault(r.repo, []).append((theorem_of[r.uid], r.proof))
    for name, proofs in by_repo.items():
        root = Path(source_dir) if source_dir else Path(by_name[name].url)
        if not root.is_dir():
            raise InputError(f"--export needs the Lean sources of {name}: give --source DIR (a checkout at "
                             f"commit {by_name[name].commit[:12]})")
        for p in export_patches(proofs, root, out_dir, backend=backend):
            lines.append(f"export: {p.path} ({len(p.theorems)} theorem(s))")
    return lines
