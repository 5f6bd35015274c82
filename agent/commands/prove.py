"""`lifelean prove`: search for proofs of named theorems, or of a repository's open theorems."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import click

from agent.commands._common import emit, json_option, workspace_from
from common.errors import InputError

CHECKED_TEXT = {"replay": "checked by replay of the recorded Lean trace; Lean did not run",
                "lean": "verified by Lean (LeanDojo)"}


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
        where = f" in repository '{repo_name}'" if repo_name else ""
        raise InputError(f"theorem(s) not found{where}: {', '.join(missing)}")
    return targets


def _json_row(r) -> dict[str, Any]:
    return {"theorem": r.theorem, "repo": r.repo, "proved": r.proved, "checked_by": r.checked_by,
            "proof": r.proof, "expansions": r.expansions, "seconds": round(r.seconds, 3)}


def _summary(results: list) -> dict[str, Any]:
    proved = [r for r in results if r.proved]
    return {"attempted": len(results), "proved": len(proved),
            "proof_rate": len(proved) / len(results) if results else None,
            "checked_by": sorted({r.checked_by for r in results if r.checked_by}),
            "seconds": round(sum(r.seconds for r in results), 3),
            "expansions": sum(r.expansions for r in results)}


def _render(data: dict[str, Any]) -> None:
    for row in data["results"]:
        mark = "proved" if row["proved"] else "failed"
        how = f"; {CHECKED_TEXT.get(row['checked_by'], row['checked_by'])}" if row["proved"] else ""
        click.echo(f"{mark:6}  {row['repo']}: {row['theorem']}  ({row['expansions']} expansions, "
                   f"{row['seconds']:.2f} s{how})")
        if row["proved"]:
            for tactic in row["proof"]:
                click.echo("          " + tactic.replace("\n", "\n          "))
    s = data["summary"]
    how = "; ".join(CHECKED_TEXT.get(c, c) for c in s["checked_by"])
    click.echo(f"proved {s['proved']}/{s['attempted']} theorems" + (f" ({how})" if how else ""))
    for line in data.get("export", []):
        click.echo(line)


@click.command(context_settings={"show_default": True})
@click.argument("theorems", nargs=-1)
@click.option("--repo", "repo_name", default=None, help="Repository name; alone: attempt its sorry and held-out "
              "test theorems.")
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

    Results are appended to proofs.jsonl as they finish; proved theorems enter the memory bank. With the default
    replay environment a proof is checked by replay of the recorded Lean trace, not by Lean.
    """
    from agent.proving import open_theorems, prove_theorems

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
        repos = ws.load_repositories()
        if not repos:
            raise InputError(f"{ws.root}: no repositories yet; run `lifelean add SOURCE` first")
        targets = select_targets(repos, theorems, repo_name)
        if not targets:
            raise InputError("nothing to prove: the repository has no sorry or held-out test theorems; "
                             "name theorems explicitly")
        by_name = {r.name: r for r in repos}
        results = []
        groups: dict[str, list] = {}
        for r, t in targets:
            groups.setdefault(r.name, []).append(t)
        for name, thms in groups.items():
            results += prove_theorems(ws, config, by_name[name], thms, repositories=by_name)
        data: dict[str, Any] = {"results": [_json_row(r) for r in results], "summary": _summary(results)}
        if export_dir is not None:
            data["export"] = _export(results, targets, by_name, Path(export_dir), source_dir)
    emit(data, as_json, _render)


def _export(results: list, targets: list, by_name: dict, out_dir: Path, source_dir: str | None) -> list[str]:
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
        for p in export_patches(proofs, root, out_dir):
            lines.append(f"export: {p.path} ({len(p.theorems)} theorem(s))")
    return lines
