"""`lifelean memory stats|search|show|forget`: inspect and edit the premise store and the memory bank."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from agent.commands._common import emit, json_option, workspace_from
from common.errors import InputError


def _dir_bytes(path: Path) -> int:
    if not path.exists():
        return 0
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _open(ctx: click.Context):
    from agent import memory_ops

    ws = workspace_from(ctx)
    config = ws.config()
    store = memory_ops.open_store(ws, config)
    bank = memory_ops.open_bank(ws, config, store.encoder)
    return ws, config, store, bank


@click.group()
def memory() -> None:
    """Inspect and edit the premise store and the memory bank."""


@memory.command()
@json_option
@click.pass_context
def stats(ctx: click.Context, as_json: bool) -> None:
    """Per repository: premises, bank items, bytes on disk, compression ratio, encoder version."""
    ws, config, store, bank = _open(ctx)
    stored = store.repos()
    bank_stats = bank.stats()
    chroma_bytes = 0 if config.memory.chroma_url else _dir_bytes(ws.chroma_dir)
    total_premises = sum(sum(c.values()) for c in stored.values())
    repos: dict[str, dict[str, Any]] = {}
    for name in sorted(set(stored) | set(bank_stats)):
        premises = sum(stored.get(name, {}).values())
        b = bank_stats.get(name, {})
        premise_bytes = int(chroma_bytes * premises / total_premises) if total_premises else 0
        repos[name] = {
            "commits": sorted(stored.get(name, {})),
            "premises": premises,
            "bank_items": b.get("items", 0),
            "bank_steps": b.get("steps", 0),
            "bank_proofs": b.get("proofs", 0),
            "bank_bytes": b.get("bytes", 0),
            "premise_bytes": premise_bytes,
            "bytes_on_disk": b.get("bytes", 0) + premise_bytes,
            "compression_ratio": b.get("compression_ratio"),
            "encoder": store.version,
        }
    data = {
        "encoder": store.version,
        "collection": store.collection.name,
        "chroma": config.memory.chroma_url or str(ws.chroma_dir),
        "repos": repos,
        "totals": {"premises": store.count(), "bank_items": len(bank), "chroma_bytes": chroma_bytes,
                   "bank_bytes": bank.disk_bytes()},
    }

    def render(d: dict[str, Any]) -> None:
        click.echo(f"encoder {d['encoder']}   premise store {d['chroma']}")
        click.echo(f"{'repository':32} {'premises':>9} {'bank items':>11} {'bytes':>10} {'ratio':>6}")
        for name, r in d["repos"].items():
            ratio = f"{r['compression_ratio']:.1f}x" if r["compression_ratio"] else "-"
            click.echo(f"{name:32} {r['premises']:>9} {r['bank_items']:>11} {r['bytes_on_disk']:>10} {ratio:>6}")
        t = d["totals"]
        click.echo(f"{'total':32} {t['premises']:>9} {t['bank_items']:>11} {t['chroma_bytes'] + t['bank_bytes']:>10}")

    emit(data, as_json, render)


@memory.command()
@click.argument("text")
@click.option("--k", "k", type=click.IntRange(min=1), default=10, show_default=True, help="Results of each kind.")
@click.option("--repo", "repo", default=None, help="Only this repository (name).")
@json_option
@click.pass_context
def search(ctx: click.Context, text: str, k: int, repo: str | None, as_json: bool) -> None:
    """Premises and bank items nearest to a proof state or any text, with scores."""
    _, _, store, bank = _open(ctx)
    vector = store.encoder.encode([text])
    repos = [repo] if repo else None
    premises = store.retrieve_by_vectors(vector, k, repos=repos)[0]
    items = bank.match(vector[0], k, repos=repos, kind=None)
    data = {
        "query": text,
        "premises": [{"id": p.id, "full_name": p.full_name, "path": p.path, "repo": p.repo,
                      "score": round(p.score, 4)} for p in premises],
        "bank": [{"id": m.id, "kind": m.item.kind, "repo": m.item.repo, "theorem": m.item.theorem,
                  "tactic": m.item.tactic, "score": round(m.score, 4)} for m in items],
    }

    def render(d: dict[str, Any]) -> None:
        click.echo("premises:")
        for p in d["premises"]:
            click.echo(f"  {p['score']:.3f}  {p['full_name']}  ({p['repo']}, {p['path']})")
        click.echo("bank:")
        for m in d["bank"]:
            click.echo(f"  {m['score']:.3f}  #{m['id']} {m['kind']} {m['theorem']}: {m['tactic'][:80]}")

    emit(data, as_json, render)


@memory.command()
@click.argument("item_id")
@json_option
@click.pass_context
def show(ctx: click.Context, item_id: str, as_json: bool) -> None:
    """Show a bank item (a number) or a premise (`repo@commit:full_name`)."""
    _, _, store, bank = _open(ctx)
    if item_id.isdigit():
        data: dict[str, Any] = {"type": "bank_item", "id": int(item_id), **bank.get(int(item_id)).to_json()}
    else:
        found = store.get([item_id])
        if not found:
            raise InputError(f"memory show {item_id}: no such premise id (ids look like repo@commit:full_name; "
                             "see `lifelean memory search`)")
        p = found[0]
        data = {"type": "premise", "id": p.id, "full_name": p.full_name, "repo": p.repo, "commit": p.commit,
                "path": p.path, "code": p.code}

    def render(d: dict[str, Any]) -> None:
        for key, value in d.items():
            if isinstance(value, list):
                value = "\n    " + "\n    ".join(value) if value else "-"
            click.echo(f"{key}: {value}")

    emit(data, as_json, render)


@memory.command()
@click.argument("repo")
@click.option("--commit", default=None, help="Only this commit (a prefix is enough).")
@json_option
@click.pass_context
def forget(ctx: click.Context, repo: str, commit: str | None, as_json: bool) -> None:
    """Remove a repository's premises and bank items, and record the forgetting in the workspace state."""
    from agent import memory_ops

    ws = workspace_from(ctx)
    with ws.lock():
        data = memory_ops.forget(ws, repo, commit)
    emit(data, as_json, lambda d: click.echo(
        f"forgot {d['repo']}{'@' + d['commit'] if d['commit'] else ''}: {d['premises_removed']} premises, "
        f"{d['bank_items_removed']} bank items"))

