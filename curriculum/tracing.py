"""Tracing a Lean repository with LeanDojo (users' machines: needs Lean, elan, git >= 2.25 and `lean-dojo`).

`lean_dojo` is imported only here and only when tracing is asked for: its import runs `git --version`
and creates a cache directory, which must not happen for commands that never trace. The traced repo
is exported to records of LeanDojo Benchmark 4's format (the same fields LeanDojo's
`generate-benchmark-lean4` script writes) and parsed by the loaders every other source goes through.

Written against lean-dojo 4.20.0, whose behaviour this module relies on:
* `TracedTactic.get_annotated_tactic()` returns a *tuple* `(text, provenances)`; the export format is a list.
* `trace()` loads the traced repo from LeanDojo's cache with `LeanGitRepo.from_path(cache path)`, so
  `traced_repo.repo.url` is that cache path, not the URL that was traced. A Dojo opened on the cache path is
  another cache key (a second full trace), so the URL and commit recorded are those of the `LeanGitRepo`
  we built, never `traced_repo.repo`'s.
* Without a commit, LeanDojo itself resolves a remote's default branch head (`get_latest_commit`); so do we.
"""
from __future__ import annotations

import errno
import hashlib
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Sequence

from common.errors import InputError
from common.lean_dojo_import import import_lean_dojo
from curriculum.lean_data import Repository, parse_premise_file, parse_theorem

MIN_GIT = (2, 25)
TRACE_NEEDS = "a trace needs several GB of disk under CACHE_DIR (mathlib-based: 20+ GB) and 16+ GB of RAM"


def _git_version() -> tuple[int, int] | None:
    try:
        out = subprocess.run(["git", "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"(\d+)\.(\d+)", out)
    return (int(m.group(1)), int(m.group(2))) if m else None


def missing_lean_tools() -> str | None:
    """What tracing needs that this machine lacks (one phrase), or None when everything is there.

    Checked before LeanDojo is called, so that a machine without Lean gets one line instead of a traceback
    minutes into a clone.
    """
    version = _git_version()
    if version is None:
        return "git is not on PATH (LeanDojo needs git >= 2.25)"
    if version < MIN_GIT:
        return f"git {version[0]}.{version[1]} is too old (LeanDojo needs git >= 2.25)"
    try:
        import_lean_dojo()
    except ImportError:
        return "the Python package lean-dojo is not installed (pip install 'lifelean[lean]')"
    absent = [tool for tool in ("elan", "lake", "lean") if shutil.which(tool) is None]
    if absent:
        return (f"no Lean 4 toolchain: {', '.join(absent)} not on PATH (install elan: "
                "https://github.com/leanprover/elan, then open a new shell)")
    return None


def _require_lean_dojo():
    missing = missing_lean_tools()
    if missing is not None:
        raise InputError(f"tracing a Lean repository needs LeanDojo and Lean: {missing}; "
                         "or add an already traced dataset directory (LeanDojo export format)")
    return import_lean_dojo()


def explain_lean_failure(exc: BaseException) -> str:
    """One line naming what went wrong in LeanDojo, GitHub, lake, git or the network, and the remedy.

    Why: LeanDojo surfaces all of these as raw exceptions (or bare asserts) deep in a trace; a user needs
    to know whether to set a token, free disk, fix the build or retry.
    """
    name = type(exc).__name__
    text = (str(exc).strip().splitlines() or [""])[0][:300]
    status = getattr(exc, "status", None)
    if name == "RateLimitExceededException" or (status == 403 and "rate limit" in str(exc).lower()):
        return ("GitHub API rate limit reached: set GITHUB_ACCESS_TOKEN to a personal access token "
                "(no scopes needed for public repositories) and retry")
    if name == "BadCredentialsException" or status == 401:
        return "GitHub rejected GITHUB_ACCESS_TOKEN (bad credentials): fix or unset it"
    if name == "UnknownObjectException" or status == 404:
        return f"not found on GitHub ({text}): check the repository URL and the @commit"
    if name == "GithubException":
        return f"GitHub API error {status}: {text}"
    if isinstance(exc, subprocess.CalledProcessError):
        cmd = exc.cmd if isinstance(exc.cmd, str) else " ".join(map(str, exc.cmd or []))
        tail = ((exc.stderr or exc.output or "") if isinstance(exc.stderr or exc.output, str) else "").strip()
        tail = tail.splitlines()[-1][:200] if tail else ""
        if "lake" in cmd:
            return (f"`{cmd}` failed (exit {exc.returncode}){': ' + tail if tail else ''}; run `lake build` in a "
                    "checkout at that commit to see the full output (does it build with its own lean-toolchain?)")
        return f"`{cmd}` failed (exit {exc.returncode}){': ' + tail if tail else ''}"
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return f"out of disk space: {TRACE_NEEDS}; set CACHE_DIR to a disk with room"
    if isinstance(exc, MemoryError) or "OOM" in text:
        return f"out of memory: {TRACE_NEEDS}"
    if isinstance(exc, FileNotFoundError) and any(t in text for t in ("lake", "lean", "elan")):
        return f"Lean toolchain missing ({text}): install elan (https://github.com/leanprover/elan)"
    if name == "GitCommandError":
        return f"git failed: {text}; check the URL, the commit and your network"
    if name in ("URLError", "ConnectionError", "ConnectTimeout", "ReadTimeout", "Timeout", "timeout",
                "ConnectionResetError", "ConnectionRefusedError", "RemoteDisconnected", "gaierror"):
        return f"network error ({name}: {text}): check the connection (and a proxy) and retry"
    if name == "DojoInitError":
        return f"LeanDojo could not start it ({text})"
    if name == "DojoCrashError":
        return f"Lean crashed ({text}); {TRACE_NEEDS}"
    return f"LeanDojo failed: {name}: {text}" if text else f"LeanDojo failed: {name}"


def assign_split(full_name: str, has_tactics: bool, val_pct: int = 10, test_pct: int = 10) -> str:
    """Deterministic held-out split by sha1 of the name: about `test_pct`% test, `val_pct`% val.

    Only theorems with tactic proofs are held out: a term-mode proof gives the prover nothing to replay.
    """
    if not has_tactics:
        return "train"
    bucket = _bucket(full_name)
    if bucket < test_pct:
        return "test"
    if bucket < test_pct + val_pct:
        return "val"
    return "train"


def _bucket(full_name: str) -> int:
    return int(hashlib.sha1(full_name.encode("utf-8")).hexdigest(), 16) % 100


def assign_splits(names: Sequence[tuple[str, bool]], val_pct: int = 10, test_pct: int = 10) -> dict[str, str]:
    """Splits of a repository's theorems ((name, has tactics) pairs): :func:`assign_split`, then topped up.

    Why the top-up: with the sha1 buckets alone a repository of fewer than ~10 tactic theorems usually gets
    no held-out theorem, so it would never be evaluated. With 2+ tactic theorems at least one is test, with
    4+ at least one is val, always keeping the majority for training; the theorems promoted are those with
    the lowest buckets, so the choice is deterministic and stable as the repository grows.
    """
    splits = {name: assign_split(name, has, val_pct, test_pct) for name, has in names}
    tactic_names = sorted((n for n, has in names if has), key=lambda n: (_bucket(n), n))
    for split, minimum_size in (("test", 2), ("val", 4)):
        if len(tactic_names) >= minimum_size and not any(splits[n] == split for n in tactic_names):
            train = [n for n in tactic_names if splits[n] == "train"]
            if len(train) > 1:
                splits[train[0]] = split
    return splits


def _annotated(tactic: Any) -> list:
    """`get_annotated_tactic()` as the export format's `[text, [provenance, ...]]` (4.20.0 returns a tuple)."""
    text, provenances = tactic.get_annotated_tactic()
    return [text, [dict(p) for p in provenances]]


def _export_theorem(traced_repo: Any, thm: Any, packages_dir: str, url: str, commit: str) -> dict[str, Any]:
    """One theorem record, as LeanDojo's benchmark export writes it; `url`/`commit` = what was traced."""
    if thm.repo == traced_repo.repo:
        file_path = str(thm.theorem.file_path)
    else:
        name = next((n for n, dep in traced_repo.dependencies.items() if dep == thm.repo), thm.repo.name)
        file_path = f"{packages_dir}/{name}/{thm.theorem.file_path}"
    tactics = [
        {
            "tactic": t.tactic,
            "annotated_tactic": _annotated(t),
            "state_before": t.state_before,
            "state_after": t.state_after,
        }
        for t in thm.get_traced_tactics()
        if t.state_before != "no goals" and "·" not in t.tactic
    ]
    return {
        "url": url,
        "commit": commit,
        "file_path": file_path,
        "full_name": thm.theorem.full_name,
        "start": list(thm.start),
        "end": list(thm.end),
        "traced_tactics": tactics,
    }


def normalize_git_url(url: str) -> str:
    """The URL LeanDojo will use for its cache key: no trailing `/` or `.git`; ssh:// and git:// rejected.

    LeanDojo accepts https URLs, `git@github.com:user/repo` (turned into https) and local paths only.
    """
    url = url.strip()
    if re.match(r"^(ssh|git)://", url):
        raise InputError(f"{url}: ssh:// and git:// URLs are not supported by LeanDojo; use the https URL "
                         "(e.g. https://github.com/USER/REPO) or a local checkout")
    url = url.rstrip("/")
    if url.endswith(".git"):
        url = url[:-4]
    return url.rstrip("/")


def resolve_repo(lean_dojo: Any, source: str, commit: str | None) -> Any:
    """A `LeanGitRepo` for a local checkout or a URL; without `commit`, the ref LeanDojo itself would use
    (a local checkout's HEAD; a remote's default-branch head via `get_latest_commit`)."""
    local = Path(source).expanduser()
    try:
        if local.exists():
            if not (local / ".git").exists():
                raise InputError(f"{source}: LeanDojo traces git repositories only; `git init` and commit it first")
            if commit is None:
                return lean_dojo.LeanGitRepo.from_path(local.resolve())
            return lean_dojo.LeanGitRepo(str(local.resolve()), commit)
        url = normalize_git_url(source)
        return lean_dojo.LeanGitRepo(url, commit or lean_dojo.get_latest_commit(url))
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"{source}{'@' + commit if commit else ''}: {explain_lean_failure(exc)}") from None


def trace_repository(source: str, commit: str | None, name: str | None, with_dependencies: bool = False) -> Repository:
    """Trace a git URL (at `commit`, a SHA, branch or tag) or a local Lean repository with LeanDojo.

    By default only the repository's own theorems are kept (LeanAgent keeps its dependencies' too,
    which makes a mathlib-based repository look like mathlib to the curriculum); premises of
    dependencies are always kept, since the repository's proofs use them. Any failure is one line
    (InputError) naming the remedy; nothing is written outside LeanDojo's cache.
    """
    lean_dojo = _require_lean_dojo()
    repo = resolve_repo(lean_dojo, source, commit)
    try:
        traced = lean_dojo.trace(repo)
        return _to_repository(traced, repo, source, name, with_dependencies)
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"{source}@{repo.commit[:12]}: tracing failed: {explain_lean_failure(exc)}") from None


def _to_repository(traced: Any, repo: Any, source: str, name: str | None, with_dependencies: bool) -> Repository:
    """A traced repo as our `Repository`, with the URL and commit that were traced (see the module doc)."""
    import networkx as nx

    url, commit = repo.url, repo.commit
    packages_dir = ".lake/packages"
    records = []
    for thm in traced.get_traced_theorems():
        if thm.repo.is_lean4 or (not with_dependencies and thm.repo != traced.repo):
            continue
        records.append(_export_theorem(traced, thm, packages_dir, url, commit))
    splits = assign_splits([(r["full_name"], bool(r["traced_tactics"])) for r in records])
    theorems = [parse_theorem(rec, f"trace of {source}", n, split=splits[rec["full_name"]])
                for n, rec in enumerate(records, 1)]
    graph = traced.traced_files_graph
    files = []
    if graph is not None:
        for n, node in enumerate(reversed(list(nx.topological_sort(graph))), 1):
            tf = graph.nodes[node]["traced_file"]
            rec = {"path": str(tf.path), "imports": [str(s) for s in graph.successors(node)],
                   "premises": tf.get_premise_definitions()}
            files.append(parse_premise_file(rec, f"trace of {source}", n))
    if not theorems:
        raise InputError(f"{source}: LeanDojo traced no theorems of this repository")
    lean_version = getattr(repo, "lean_version", None)
    return Repository(
        url=url,
        commit=commit,
        name=name or repo.name,
        lean_version=str(lean_version) if lean_version else None,
        theorems=tuple(theorems),
        premise_files=tuple(files),
        dependencies=tuple(dep.url for dep in traced.dependencies.values()),
    )
