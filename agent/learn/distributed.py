"""Retriever training on several processes (one per GPU) with torchrun and DistributedDataParallel.

    torchrun --standalone --nproc_per_node N -m agent.learn.distributed --workspace WS --step S --out DIR

Every rank rebuilds exactly what the loop's learn step (`agent.loop.learn.learn_retriever`) builds for step S:
the configuration, the corpus of live repositories, the strategies (replay draws from the bank, opened read-only,
over the repositories learned before S), the previous checkpoint and the capped training pairs. Inputs are only
read: the process that launched torchrun holds the workspace lock, so the ranks never take it. Rank 0 writes the
checkpoint to `--out` with :meth:`Learner.save` (the same files the loop writes) and a stats JSON beside it; the
other ranks write nothing.

How a batch is split (:class:`ShardedRetrieverLearner`): every rank runs the same :meth:`Learner.train_repository`
with the same seeded random generator, so all ranks build the same batches (same rows, same candidate columns,
same replayed examples). Each rank then embeds only its contiguous share of the rows through the query tower
wrapped in `torch.nn.parallel.DistributedDataParallel`, and scores them against *all* the batch's columns, so
in-batch negatives are those of the full batch. A rank's loss is its rows' mean scaled by W·b/B (W ranks, b of the
batch's B rows on this rank); DDP averages gradients over ranks, which gives exactly the gradient of the full
batch's mean, also when B is not a multiple of W. Strategy loss terms (distill's KL, a mean over rows) are scaled
the same way. Gradient clipping and AdamW then see the full-batch gradient on every rank, so the weights stay
equal on all ranks and equal (up to floating-point rounding) to one process training on the same batches.

Mined negatives (ANCE): the ranks all-gather their rows' (detached) query vectors, and every rank mines for the
whole batch exactly as one process does, so mined columns are shared in-batch as before.

Strategies: naive, frozen, replay, distill and merge (a deterministic rescaling, identical on every rank) are exact.
Refused with a one-line error: `ewc` (its penalty uses the weights outside DDP's forward pass, which DDP's gradient
hooks do not allow) and `adapters` (it swaps the model for a peft model per repository, which this wrapper does not
follow).

Differences from the in-process learn step: no mid-repository snapshots (a killed distributed step retrains from
its start, to the same weights for the same process count); dropout (MiniLM's 0.1) draws its own random stream on
each rank (rank 0 keeps the single-process seed), so with dropout on, runs with different process counts differ as
two dropout draws do; with dropout 0 they agree up to rounding (each rank pads only its own share), which still
changes the encoder version hash between process counts.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from agent.learn.retriever import Batch, RetrieverLearner
from common.errors import InputError, LifeleanError

if TYPE_CHECKING:
    import torch

    from agent.config import RunConfig
    from agent.workspace import Workspace

REFUSED = {"ewc": "its penalty uses the weights outside DDP's forward pass",
           "adapters": "it replaces the query tower by a peft model per repository"}
PROGRESS = "lifelean-batch "   # rank 0's stdout lines the launcher turns into on_batch(done, total, loss)


def refuse_unsupported(strategies: Sequence[str]) -> None:
    """One-line InputError for a strategy that cannot train exactly under DDP."""
    for name in strategies:
        if name in REFUSED:
            raise InputError(f"[learning] strategy '{name}' cannot train on several processes ({REFUSED[name]}); "
                             "set [learning] processes = 1 or choose among naive, replay, distill and merge")


def shard(n: int, rank: int, world: int) -> tuple[int, int]:
    """The contiguous rows [lo, hi) of a batch of `n` rows that `rank` of `world` takes (sizes differ by <= 1)."""
    return n * rank // world, n * (rank + 1) // world


def _tower_class() -> type:
    import torch

    class QueryTower(torch.nn.Module):
        """What DDP wraps: one forward = the query vectors of a batch's rows, however the learner embeds them
        (micro-batches included), so DDP sees one forward per backward and only the parameters that reach the
        vectors (the pooler, which pooling ignores, stays unused and untouched, as in one process)."""

        def __init__(self, learner: RetrieverLearner, inner: "torch.nn.Module"):
            super().__init__()
            self.inner = inner
            self._learner = learner

        def forward(self, rows: Batch) -> "torch.Tensor":
            return RetrieverLearner.query_vectors(self._learner, self.inner, rows)

    return QueryTower


class ShardedRetrieverLearner(RetrieverLearner):
    """A :class:`RetrieverLearner` that trains one rank's share of every batch's rows under DDP (see the module
    docstring). `model` stays the plain query tower, so strategies, parameter names, optimizer state and
    checkpoints are exactly those of one process; only the student's forward pass goes through DDP."""

    def __init__(self, *args: Any, rank: int, world: int, device: "torch.device", **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.rank, self.world, self.device = rank, world, device
        self._ddp: Any = None
        self._ddp_inner: Any = None
        self._docs: tuple[Any, Any] | None = None
        self._share = (1, 1)           # (rows of the current batch on this rank, rows of the batch)
        for s in self.strategies:      # strategy terms are per-row means over this rank's rows: scale them alike
            s.loss_terms = self._scaled_terms(s.loss_terms)  # type: ignore[method-assign]

    # -- DDP -------------------------------------------------------------------------------------------
    def _wrapped(self) -> Any:
        """The query tower in DDP, built at the first forward pass (after every strategy's `before_repo`)."""
        import torch
        from torch.nn.parallel import DistributedDataParallel

        if self._ddp is None or self._ddp_inner is not self.model:
            if self.rank:  # dropout: an independent stream per rank; rank 0 keeps the single-process one
                torch.manual_seed(random.Random(f"{torch.initial_seed()}:rank{self.rank}").getrandbits(63))
            ids = [self.device.index] if self.device.type == "cuda" else None
            self._ddp = DistributedDataParallel(_tower_class()(self, self.model), device_ids=ids,
                                                find_unused_parameters=True, broadcast_buffers=False)
            self._ddp_inner = self.model
        return self._ddp

    def _all_reduce(self, value: "torch.Tensor") -> "torch.Tensor":
        import torch.distributed as dist

        value = value.detach().clone()
        dist.all_reduce(value)
        return value

    def _share_of(self, mean: "torch.Tensor") -> "torch.Tensor":
        """A term that is a mean over this rank's rows -> its gradient scaled so DDP's average is the full
        batch's gradient; its value is the full batch's mean (one all-reduce of the value, for the statistics)."""
        mine, n = self._share
        grad = mean * (self.world * mine / n)
        value = self._all_reduce(mean * mine) / n
        return grad + (value - grad).detach()

    def _scaled_terms(self, terms: Callable[[Any], dict[str, "torch.Tensor"]]) -> Callable[[Any], dict]:
        def scaled(batch: Any) -> dict[str, "torch.Tensor"]:
            return {name: self._share_of(v) for name, v in terms(batch).items()}
        return scaled

    def _gather_rows(self, q: "torch.Tensor", n: int) -> "torch.Tensor":
        """Every rank's rows of the batch's query vectors (detached), in row order, on every rank."""
        import torch
        import torch.distributed as dist

        sizes = [shard(n, r, self.world)[1] - shard(n, r, self.world)[0] for r in range(self.world)]
        width = max(max(sizes), 1)
        padded = torch.zeros(width, q.shape[1], dtype=q.dtype, device=q.device)
        mine = sizes[self.rank]
        padded[:mine] = q[:mine].detach()
        parts = [torch.empty_like(padded) for _ in range(self.world)]
        dist.all_gather(parts, padded)
        return torch.cat([p[:s] for p, s in zip(parts, sizes)])

    # -- the learner's members ------------------------------------------------------------------------
    def doc_matrix(self) -> "torch.Tensor":
        docs = super().doc_matrix()
        if docs.device == self.device:
            return docs
        if self._docs is None or self._docs[0] is not docs:
            self._docs = (docs, docs.to(self.device))
        return self._docs[1]

    def forward(self, batch: Batch) -> "torch.Tensor":
        """This rank's rows against all of the batch's columns; afterwards `batch` holds only those rows (so
        strategies' `loss_terms`, e.g. distill's teacher logits, see the same rows)."""
        import torch
        import torch.nn.functional as F

        n = len(batch.examples)
        lo, hi = shard(n, self.rank, self.world)
        rows = list(range(lo, hi)) or [0]   # a rank without rows runs one row at weight 0 (DDP needs a backward)
        self._share = (hi - lo, n)
        q = self._wrapped()(dataclasses.replace(batch, examples=[batch.examples[i] for i in rows]))
        if self.config.mined_negatives > 0 and not batch.mined:
            self.mine_negatives(batch, self._gather_rows(q, n))
        index = torch.tensor(rows)
        batch.examples = [batch.examples[i] for i in rows]
        batch.positives = [batch.positives[i] for i in rows]
        batch.target = batch.target[index].to(self.device)
        batch.mask = batch.mask[index].to(self.device)
        batch.logits = self.score(q, batch)
        batch.loss = self._share_of(F.cross_entropy(batch.logits, batch.target))
        return batch.loss

    def to_cpu(self) -> None:
        """Weights and optimizer state back on the CPU before saving (the checkpoint is device-free)."""
        import torch

        self.model.to("cpu")
        if self.optimizer is not None:
            for state in self.optimizer.state.values():
                for k, v in list(state.items()):
                    if isinstance(v, torch.Tensor):
                        state[k] = v.cpu()


# ----------------------------------------------------------------------------------------------
# One rank.


def _entry(state: Any, step: int) -> Any:
    for e in state.started():
        if e.step == step:
            return e
    raise InputError(f"no started stream entry has step {step}; `lifelean status` lists the steps")


def build_learner(ws: "Workspace", config: "RunConfig", step: int, rank: int = 0, world: int = 1,
                  device: Any = None) -> tuple[ShardedRetrieverLearner, list[Any], Any, Path | None]:
    """What the loop's learn step builds for `step`, read-only: (learner, training pairs, repository,
    previous checkpoint)."""
    import torch

    from agent.learn.learner import cap_examples
    from agent.learn.retriever import training_pairs
    from agent.learn.strategies import build_strategies
    from agent.loop.context import LoopContext
    from agent.loop.learn import AllowedRepos
    from agent.workspace.checkpoints import latest_checkpoint
    from agent.workspace.memory import base_encoder, open_bank

    device = device if device is not None else torch.device("cpu")
    state = ws.load_state()
    entry = _entry(state, step)
    ctx = LoopContext(ws, config, state)
    repo = ctx.repository(entry.key)
    corpus = ctx.corpus()
    source = None
    if "replay" in config.learning.strategy:   # as agent.loop.learn.replay_source, on a read-only bank
        source = AllowedRepos(open_bank(ws, config, read_only=True), ctx.learned_names(step - 1), True)
    strategies = build_strategies(config.learning, replay_source=source)
    base = base_encoder(config)
    base.model.to(device)
    learner = ShardedRetrieverLearner(base, config.learning, corpus, strategies, rank=rank, world=world,
                                      device=device)
    previous = latest_checkpoint(ws, before=step)
    if previous is not None:
        learner.load(previous)   # after the move to `device`: the optimizer state follows the parameters
    pairs = cap_examples(training_pairs(repo, corpus.index), config.learning.max_examples,
                         f"{config.seed}:{step}")
    return learner, pairs, repo, previous


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:500]


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m agent.learn.distributed",
                                description="One rank of the retriever's learn step under torchrun (DDP).")
    p.add_argument("--workspace", required=True, help="the workspace (read only; its lock holder launched us)")
    p.add_argument("--step", type=int, required=True, help="the stream entry's step id to learn")
    p.add_argument("--out", required=True, help="checkpoint directory rank 0 writes (as Learner.save)")
    p.add_argument("--config", help="a lifelean.toml to use instead of the workspace's")
    p.add_argument("--stats", help="where rank 0 writes the training statistics (default: OUT.stats.json)")
    p.add_argument("--errors", help="a directory where a failing rank writes rank-R.json (its one-line error)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    try:
        return _train_rank(args, rank, world, local)
    except BaseException as exc:  # noqa: BLE001 - every failure is reported to the launcher, then re-raised
        if args.errors:
            record = {"rank": rank, "world": world, "type": type(exc).__name__, "message": _one_line(exc),
                      "lifelean": isinstance(exc, LifeleanError), "time": time.time()}
            Path(args.errors).mkdir(parents=True, exist_ok=True)
            (Path(args.errors) / f"rank-{rank}.json").write_text(json.dumps(record), encoding="utf-8")
        if argv is not None:   # called in-process (tests): the caller sees the exception itself
            raise
        traceback.print_exc()
        return 1


def _train_rank(args: argparse.Namespace, rank: int, world: int, local: int) -> int:
    import torch
    import torch.distributed as dist

    from agent.config import load_config
    from agent.workspace import Workspace

    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS") or 1)))
    ws = Workspace.open(args.workspace)
    config = load_config(Path(args.config)) if args.config else ws.config()
    refuse_unsupported(config.learning.strategy)
    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{local}") if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if cuda else "gloo")
    try:
        learner, pairs, repo, previous = build_learner(ws, config, args.step, rank, world, device)
        on_batch = None
        if rank == 0:
            def on_batch(done: int, total: int, loss: float) -> None:
                print(PROGRESS + json.dumps([done, total, loss]), flush=True)
        stats = learner.train_repository(repo.name, pairs, args.step, config.seed, partial=None, on_batch=on_batch)
        if rank == 0:
            learner.to_cpu()
            out = Path(args.out)
            learner.save(out, {"step": args.step, "repo": repo.key, "seed": config.seed,
                               "from": previous.name if previous is not None else None}, release=True)
            stats.update({"checkpoint": str(out), "encoder_version": learner.query.version, "processes": world,
                          "backend": dist.get_backend(), "device": device.type})
            stats_path = Path(args.stats) if args.stats else out.with_name(out.name + ".stats.json")
            tmp = stats_path.with_name(stats_path.name + ".tmp")
            tmp.write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
            os.replace(tmp, stats_path)
    finally:
        dist.destroy_process_group()
    return 0


# ----------------------------------------------------------------------------------------------
# The launcher the loop calls.


def _last_line(path: Path) -> str | None:
    try:
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8", errors="replace").splitlines()]
    except OSError:
        return None
    lines = [ln for ln in lines if ln and not set(ln) <= set("=-")]
    return lines[-1] if lines else None


def _failure(tmp: Path, rc: int, processes: int) -> LifeleanError:
    """The root cause of a failed torchrun: the first rank's own error, else the failing rank's last stderr line."""
    import common.errors as errors

    records = []
    for path in sorted((tmp / "errors").glob("rank-*.json")):
        try:
            records.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue
    if records:
        first = min(records, key=lambda r: r["time"])
        where = f"rank {first['rank']} of {first['world']}"
        cls = getattr(errors, first["type"], None)
        if first.get("lifelean") and isinstance(cls, type) and issubclass(cls, LifeleanError):
            try:
                return cls(f"distributed training ({where}): {first['message']}")
            except TypeError:
                pass
        return LifeleanError(f"distributed training failed on {where}: {first['type']}: {first['message']}")
    torchrun_err = tmp / "torchrun.stderr"
    text = torchrun_err.read_text(encoding="utf-8", errors="replace") if torchrun_err.exists() else ""
    cause = re.search(r"Root Cause.*?local_rank:\s*(\d+)", text, re.S)
    logs = {int(p.parent.name): p for p in (tmp / "logs").glob("**/attempt_*/*/stderr.log") if p.parent.name.isdigit()}
    order = ([int(cause.group(1))] if cause else []) + sorted(logs)
    for local in order:
        line = _last_line(logs[local]) if local in logs else None
        if line:
            return LifeleanError(f"distributed training failed on rank {local} of {processes} (torchrun exit {rc}): "
                                 f"{line}")
    line = _last_line(torchrun_err)
    return LifeleanError(f"distributed training failed (torchrun exit {rc}){': ' + line if line else ''}")


def torchrun_command(ws_root: Path, step: int, processes: int, out: Path, tmp: Path) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
            "--log-dir", str(tmp / "logs"), "--redirects", "2",
            "-m", "agent.learn.distributed", "--workspace", str(ws_root), "--step", str(step), "--out", str(out),
            "--config", str(tmp / "lifelean.toml"), "--stats", str(tmp / "stats.json"),
            "--errors", str(tmp / "errors")]


def train_distributed(ws: "Workspace", config: "RunConfig", step: int, processes: int, out: Path | None = None,
                      on_batch: Callable[[int, int, float], None] | None = None) -> dict[str, Any]:
    """Train step `step`'s retriever on `processes` local processes (torchrun, DDP) and return rank 0's statistics
    (those of :meth:`Learner.train_repository`, plus `checkpoint`, `encoder_version`, `processes`, `backend`).

    The checkpoint goes to `out` (default: the step's `checkpoints/<step>/`, written atomically by rank 0).
    `config` reaches the ranks as a TOML file, so they train with exactly it. Rank 0's progress arrives as
    `on_batch(done, total, loss)`. A failing rank is raised as a one-line :class:`LifeleanError` (a
    `LifeleanError` of the rank keeps its class). The caller holds the workspace lock.
    """
    from agent.config import save_config
    from agent.workspace.checkpoints import checkpoint_dir

    refuse_unsupported(config.learning.strategy)
    if processes < 1:
        raise InputError(f"[learning] processes must be at least 1, got {processes}")
    out = Path(out) if out is not None else checkpoint_dir(ws, step)
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p))
    with tempfile.TemporaryDirectory(prefix="lifelean-ddp-") as name:
        tmp = Path(name)
        save_config(config, tmp / "lifelean.toml")
        with open(tmp / "torchrun.stderr", "w", encoding="utf-8") as err:
            proc = subprocess.Popen(torchrun_command(ws.root, step, processes, out, tmp), stdout=subprocess.PIPE,
                                    stderr=err, stdin=subprocess.DEVNULL, text=True, env=env)
            try:
                assert proc.stdout is not None
                for line in proc.stdout:
                    if line.startswith(PROGRESS) and on_batch is not None:
                        try:
                            done, total, loss = json.loads(line[len(PROGRESS):])
                        except ValueError:
                            continue
                        on_batch(int(done), int(total), float(loss))
                rc = proc.wait()
            finally:
                if proc.poll() is None:   # interrupted (Ctrl-C): torchrun stops its ranks on SIGTERM
                    proc.terminate()
                    try:
                        proc.wait(timeout=60)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
        if rc != 0:
            raise _failure(tmp, rc, processes)
        return json.loads((tmp / "stats.json").read_text(encoding="utf-8"))


if __name__ == "__main__":   # run the imported module's main, so its classes are agent.learn.distributed's own
    from agent.learn.distributed import main as _main

    sys.exit(_main())
