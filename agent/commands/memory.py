"""`lifelean memory stats|list|search|show|forget`: inspect and edit the premise store and the memory bank.

Only `search` needs the encoder (it embeds the query). `stats`, `list` and `show` open the store and the bank
with :class:`RecordedEncoder`, which carries the version and dimension they were written with and no model,
so a lookup answers without loading weights. Ids are accepted as they are printed: `#593` / `593` for a bank
item; `repo@commit:full_name` for a premise, where the commit may be shortened (`@29dcec07`) and a bare
`full_name` is enough when only one stored premise has it.
"""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import click

from agent.commands._common import echo_wrapped, emit, json_option, wrap, workspace_from
from common.errors import InputError

PREMISE_ID = re.compile(r"^(?P<repo>[^@]+)@(?P<commit>[0-9a-fA-F]{4,40}):(?P<name>.+)$")


def human_bytes(n: float | int | None) -> str:
    if not n:
        return "0 B"
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TB"


def _dir_bytes(path: Path) -> int:
    if not path.exists():
        return 0
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


class RecordedEncoder:
    """The encoder as the stores recorded it (version, dimension), without its weights: enough to open the
    premise collection and the bank for reading. Anything that needs a vector raises."""

    def __init__(self, name: str, version: str, dim: int):
        self.name, self.version, self.dim = name, version, dim
        self.batch_size, self.max_length = 64, 256

    def encode(self, *args: Any, **kwargs: Any):
        raise RuntimeError("RecordedEncoder has no model; load the encoder to embed text")

    embed = encode


def recorded_encoder(ws: Any, config: Any) -> RecordedEncoder | None:
    """The base encoder's version and dimension from the bank's manifest, else from state.json (None: none)."""
    from memory.bank import MANIFEST

    name = config.memory.encoder
    try:
        manifest = json.loads((ws.bank_dir / MANIFEST).read_text(encoding="utf-8"))
        if manifest.get("encoder") and manifest.get("dim"):
            return RecordedEncoder(name, str(manifest["encoder"]), int(manifest["dim"]))
    except (OSError, ValueError, AttributeError):
        pass
    versions = {e.indexed.encoder for e in ws.load_state().entries if e.indexed is not None}
    if len(versions) == 1:
        return RecordedEncoder(name, versions.pop(), 0)
    return None


def _open(ctx: click.Context, model: bool = False):
    """Workspace, config, store and bank; with `model`, the real encoder (to embed a query)."""
    from agent.workspace import memory as memory_ops

    ws = workspace_from(ctx)
    config = ws.config()
    encoder = None if model else recorded_encoder(ws, config)
    if encoder is None:
        encoder = memory_ops.base_encoder(config)
    store = memory_ops.open_store(ws, config, encoder, read_only=True)
    ctx.call_on_close(store.close)   # drops the snapshot copy
    return ws, config, store, _bank(ws, config, encoder)


def _bank(ws: Any, config: Any, encoder: Any):
    """The bank opened for reading only (it never writes a byte)."""
    from agent.workspace import memory as memory_ops

    return memory_ops.open_bank(ws, config, encoder, read_only=True)


def _open_bank_only(ctx: click.Context):
    from agent.workspace import memory as memory_ops

    ws = workspace_from(ctx)
    config = ws.config()
    encoder = recorded_encoder(ws, config) or memory_ops.base_encoder(config)
    return ws, config, _bank(ws, config, encoder)


@click.group()
def memory() -> None:
    """Inspect and edit the premise store and the memory bank.

    \b
    Example:
      lifelean -w ~/lifelean-demo memory stats
      lifelean -w ~/lifelean-demo memory search "⊢ a + b = b + a"
      lifelean -w ~/lifelean-demo memory show '#12'
    """


@memory.command(short_help="Premises, bank items and size on disk per repository.")
@json_option
@click.pass_context
def stats(ctx: click.Context, as_json: bool) -> None:
    """Per repository of the stream (also those with nothing stored): premises, bank items, size on disk,
    compression ratio. Reads only; loads no model.

    \b
    Example:
      lifelean -w ~/lifelean-demo memory stats
      lifelean -w ~/lifelean-demo memory stats --json | jq '.totals'
    """
    ws, config, store, bank = _open(ctx)
    stored = store.repos()
    bank_stats = bank.stats()
    chroma_bytes = 0 if config.memory.chroma_url else _dir_bytes(ws.chroma_dir)
    total_premises = sum(sum(c.values()) for c in stored.values())
    names = list(dict.fromkeys([e.name for e in ws.load_state().entries if not e.forgotten]
                               + sorted(set(stored) | set(bank_stats))))
    repos: dict[str, dict[str, Any]] = {}
    for name in names:
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
        from rich.console import Console
        from rich.table import Table

        echo_wrapped(f"encoder {d['encoder']}; premise store {d['chroma']}")
        table = Table(box=None, pad_edge=False, header_style="bold")
        table.add_column("repository", overflow="fold")
        for col in ("premises", "steps", "proofs", "on disk", "ratio"):
            table.add_column(col, justify="right", no_wrap=True)
        for name, r in d["repos"].items():
            ratio = f"{r['compression_ratio']:.1f}x" if r["compression_ratio"] else "-"
            table.add_row(name, str(r["premises"]), str(r["bank_steps"]), str(r["bank_proofs"]),
                          human_bytes(r["bytes_on_disk"]), ratio)
        t = d["totals"]
        table.add_row("total", str(t["premises"]), str(sum(r["bank_steps"] for r in d["repos"].values())),
                      str(sum(r["bank_proofs"] for r in d["repos"].values())),
                      human_bytes(t["chroma_bytes"] + t["bank_bytes"]), "", style="bold")
        Console().print(table)
        echo_wrapped("steps / proofs: bank items (one tactic step; one whole proof); 'on disk' of the total is "
                     "the whole premise store and bank.")

    emit(data, as_json, render)


def merged_matches(matches: list[Any]) -> list[dict[str, Any]]:
    """Bank matches with a step and a proof of the same theorem, state and first tactic shown once (a one-tactic
    proof is stored as both); `ids` lists every item merged, `kind` says "step+proof"."""
    rows: list[dict[str, Any]] = []
    seen: dict[tuple, dict[str, Any]] = {}
    for m in matches:
        it = m.item
        key = (it.repo, it.theorem, it.state, it.tactic)
        if key in seen:
            row = seen[key]
            row["ids"].append(m.id)
            if it.kind not in row["kind"].split("+"):
                row["kind"] = "+".join(sorted({*row["kind"].split("+"), it.kind}, key=("step", "proof").index))
            if it.kind == "proof":
                row["proof"] = list(it.proof)
            continue
        row = {"id": m.id, "ids": [m.id], "kind": it.kind, "repo": it.repo, "theorem": it.theorem,
               "tactic": it.tactic, "score": round(m.score, 4), "split": getattr(it, "split", None)}
        if it.kind == "proof":
            row["proof"] = list(it.proof)
        seen[key] = row
        rows.append(row)
    return rows


@memory.command(short_help="Nearest premises and bank items to a proof state or text.")
@click.argument("text")
@click.option("--k", "k", type=click.IntRange(min=1), default=10, show_default=True, help="Results of each kind.")
@click.option("--repo", "repo", default=None, help="Only this repository (name).")
@json_option
@click.pass_context
def search(ctx: click.Context, text: str, k: int, repo: str | None, as_json: bool) -> None:
    """Premises and bank items nearest to a proof state or any text, with scores and the ids `show` takes.
    A step and a proof that are the same tactic on the same state are shown once. Premises come in the
    order the prover would read them (`[memory] rerank`: the dense top 100 reranked with BM25); their
    scores are the encoder's cosine similarities.

    \b
    Example:
      lifelean -w ~/lifelean-demo memory search "⊢ a + b = b + a" --k 5
      lifelean -w ~/lifelean-demo memory search "IsOpen s" --repo Mathlib/Topology --json
    """
    from memory.rerank import retrieve

    _, config, store, bank = _open(ctx, model=True)
    vector = store.encoder.encode([text])
    repos = [repo] if repo else None
    premises = retrieve(store, vector, [text], k, config.memory.reranker(), repos=repos)[0]
    items = merged_matches(bank.match(vector[0], 2 * k, repos=repos, kind=None))[:k]
    data = {
        "query": text,
        "premises": [{"id": p.id, "full_name": p.full_name, "path": p.path, "repo": p.repo,
                      "score": round(p.score, 4)} for p in premises],
        "bank": items,
    }

    def render(d: dict[str, Any]) -> None:
        click.echo(f"premises (show with `lifelean memory show ID`):")
        for p in d["premises"]:
            echo_wrapped(f"{p['score']:.3f}  {short_premise_id(p['id'])}", indent="  ", subsequent="         ")
            echo_wrapped(p["path"], indent="         ", subsequent="           ")
        click.echo("bank items:")
        for m in d["bank"]:
            ids = " ".join(f"#{i}" for i in m["ids"])
            echo_wrapped(f"{m['score']:.3f}  {ids} {m['kind']} {m['repo']}: {m['theorem']}", indent="  ",
                         subsequent="         ")
            tactic = m["tactic"].replace("\n", " ")
            echo_wrapped(tactic if len(tactic) <= 200 else tactic[:199] + "…", indent="         ",
                         subsequent="           ")

    emit(data, as_json, render)


def short_premise_id(pid: str) -> str:
    """`repo@commit:name` with the commit cut to 8 characters (`show` accepts it back)."""
    m = PREMISE_ID.match(pid)
    return f"{m['repo']}@{m['commit'][:8]}:{m['name']}" if m else pid


@memory.command("list", short_help="Every bank item (id, kind, split, repository, theorem).")
@click.option("--repo", "repo", default=None, help="Only this repository (name).")
@click.option("--kind", "kind", type=click.Choice(["step", "proof"]), default=None, help="Only this kind of item.")
@json_option
@click.pass_context
def list_items(ctx: click.Context, repo: str | None, kind: str | None, as_json: bool) -> None:
    """Every bank item: id, repository, kind, theorem, split (train = a traced proof; found = a proof the
    prover found). Held-out (val/test) theorems never appear here: nothing of them is ever banked.

    \b
    Example:
      lifelean memory list --repo Mathlib/Data --kind proof
      lifelean memory list --json | jq '[.[] | .split] | unique'
    """
    _, _, bank = _open_bank_only(ctx)
    rows = [{"id": i, "repo": it.repo, "commit": it.commit, "kind": it.kind, "theorem": it.theorem,
             "split": it.split, "checked_by": it.checked_by, "tactic": it.tactic}
            for i, it in bank.items(repo=repo, kind=kind)]

    def render(items: list[dict[str, Any]]) -> None:
        if not items:
            click.echo("no bank items" + (f" for {repo}" if repo else ""))
            return
        click.echo(f"{'id':>7}  {'kind':5}  {'split':5}  repository: theorem")
        for r in items:
            echo_wrapped(f"{'#' + str(r['id']):>7}  {r['kind']:5}  {r['split']:5}  {r['repo']}: {r['theorem']}",
                         subsequent=" " * 25)
        click.echo(f"{len(items)} item(s)")

    emit(rows, as_json, render)


def bank_id(text: str) -> int | None:
    """`#593` or `593` -> 593; anything else None."""
    t = text.strip()
    t = t[1:] if t.startswith("#") else t
    return int(t) if t.isdigit() else None


def workspace_premises(ws: Any, text: str) -> list[dict[str, Any]]:
    """Premises of the workspace's live, indexed repositories matching a full id, an id with a short commit,
    or a bare full name, read from the imported repositories themselves: the premise store holds exactly these,
    so a lookup needs neither chromadb nor a model (well under a second)."""
    m = PREMISE_ID.match(text)
    name = m["name"] if m else text
    out = []
    for e in ws.load_state().live():
        if e.indexed is None or (m and (e.name != m["repo"] or not e.commit.lower().startswith(m["commit"].lower()))):
            continue
        seen: set[str] = set()
        for p in ws.load_repository(e.key).premises:
            if p.full_name == name and p.full_name not in seen:
                seen.add(p.full_name)
                out.append({"id": f"{e.name}@{e.commit}:{p.full_name}", "full_name": p.full_name, "repo": e.name,
                            "commit": e.commit, "path": p.path, "code": p.code})
    return sorted(out, key=lambda r: r["id"])


@memory.command(short_help="Show a bank item ('#593') or a premise (id or name).")
@click.argument("item_id")
@json_option
@click.pass_context
def show(ctx: click.Context, item_id: str, as_json: bool) -> None:
    """Show a bank item (`#593` or `593`, as `search` and `list` print them) or a premise: its id
    `repo@commit:full_name` (the commit may be shortened) or just its full name when only one stored premise
    has it. Loads no model.

    \b
    Example:
      lifelean -w ~/lifelean-demo memory show '#12'
      lifelean -w ~/lifelean-demo memory show Nat.add_comm
      lifelean -w ~/lifelean-demo memory show 'Mathlib/Data@29dcec07:List.mem_dedup'
    """
    number = bank_id(item_id)
    if number is not None:
        _, _, bank = _open_bank_only(ctx)
        data: dict[str, Any] = {"type": "bank_item", "id": number, **bank.get(number).to_json()}
    else:
        found = workspace_premises(workspace_from(ctx), item_id)
        if not found:
            raise InputError(f"memory show {item_id}: no such bank item or premise (bank items: '#593'; premises: "
                             "repo@commit:full_name, a short commit, or a bare full name; see `lifelean memory "
                             "search`)")
        if len(found) > 1:
            raise InputError(f"memory show {item_id}: {len(found)} premises have this name; give one of: "
                             + "; ".join(short_premise_id(p["id"]) for p in found[:10])
                             + (" …" if len(found) > 10 else ""))
        data = {"type": "premise", **found[0]}

    def render(d: dict[str, Any]) -> None:
        for key, value in d.items():
            if key == "code" and not value:
                click.echo("code: (none: this dataset records no premise code; the name and path are embedded)")
                continue
            if isinstance(value, list):
                value = ("\n    " + "\n    ".join(str(v) for v in value)) if value else "-"
                click.echo(f"{key}: {value}")
            elif isinstance(value, str) and "\n" in value:
                click.echo(f"{key}:\n    " + value.replace("\n", "\n    "))
            else:
                echo_wrapped(f"{key}: {value}", subsequent="    ")

    emit(data, as_json, render)


@memory.command(short_help="Remove a repository's premises and bank items (asks first).")
@click.argument("repo")
@click.option("--commit", default=None, help="Only this commit (a prefix is enough).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (for scripts).")
@click.option("--dry-run", is_flag=True, help="Show what would be removed; change nothing.")
@json_option
@click.pass_context
def forget(ctx: click.Context, repo: str, commit: str | None, yes: bool, dry_run: bool, as_json: bool) -> None:
    """Remove a repository's premises and bank items, and mark its stream entries forgotten (their step ids,
    checkpoints and matrix rows stay). Asks first unless --yes.

    \b
    Example:
      lifelean memory forget Mathlib/Order --dry-run
      lifelean memory forget Mathlib/Order --commit 29dcec07 --yes
    """
    import sys

    from agent.workspace import memory as memory_ops

    ws = workspace_from(ctx)
    state = ws.load_state()
    entries = [e for e in state.entries if e.name == repo and not e.forgotten
               and (commit is None or e.commit.startswith(commit))]
    what = f"{repo}@{commit}" if commit else repo
    if dry_run:
        data = {"repo": repo, "commit": commit, "dry_run": True, "entries": [e.key for e in entries]}
        emit(data, as_json, lambda d: click.echo(f"would forget {what}: {len(entries)} stream entr"
                                                 f"{'y' if len(entries) == 1 else 'ies'} "
                                                 f"({', '.join(d['entries']) or 'none'}); nothing changed"))
        return
    if not yes:
        if not sys.stdin.isatty():
            raise InputError(f"memory forget {what}: deleting needs confirmation; pass --yes (or --dry-run to "
                             "preview)")
        click.confirm(f"forget {what}: remove its premises and bank items?", abort=True)
    with ws.lock():
        data = dataclasses.asdict(memory_ops.forget(ws, repo, commit))
    emit(data, as_json, lambda d: click.echo(
        f"forgot {d['repo']}{'@' + d['commit'] if d['commit'] else ''}: {d['premises_removed']} premises, "
        f"{d['bank_items_removed']} bank items"))
