"""The learner template every trained model of lifelean shares: one repository of training with strategy hooks,
seeded for reproducibility, and atomic checkpoints that carry weights, optimizer and strategy state.

Subclasses (:class:`agent.learn.retriever.RetrieverLearner`, :class:`agent.learn.generator.GeneratorLearner`)
supply the model and its batches: `model`, `make_batch`, `forward`, `batch_logits`, `examples_loss`, `usable`,
`examples_from_items`, `versions`, `weights_changed`, `num_blocks` and `lora_targets`. Strategies talk to a
learner only through these members, so one strategy serves both models.

Training is seeded per (seed, step, repository): same checkpoint + data + seed + step -> identical weights.
"""
from __future__ import annotations

import json
import random
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from common.atomic import atomic_directory
from common.heap import trim_heap

if TYPE_CHECKING:
    import torch

    from agent.learn.config import LearningConfig
    from agent.learn.strategies.base import Strategy

CHECKPOINT_SCHEMA = 1


def cap_examples(pairs: list[Any], n: int, seed: int | str) -> list[Any]:
    """At most `n` pairs, sampled with the seed (order kept), so the cap is reproducible."""
    if len(pairs) <= n:
        return list(pairs)
    keep = sorted(random.Random(f"cap:{seed}").sample(range(len(pairs)), n))
    return [pairs[i] for i in keep]


def set_determinism(seed: int) -> None:
    """Seed torch and make CPU kernels deterministic, so a resumed run retrains to identical weights."""
    import torch

    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def derive_seed(seed: int, step: int, repo: str) -> int:
    """A 31-bit seed that depends only on (run seed, step, repository)."""
    return random.Random(f"{seed}:{step}:{repo}").getrandbits(31)


_IO_FAILURE = re.compile(r"I/O error|os error|failed writing|No space left|File too large", re.I)


class Learner:
    """Training loop, optimizer and checkpoints; the model-specific parts are the subclass's."""

    config: "LearningConfig"
    strategies: list["Strategy"]
    lr: float
    batch_size: int
    optimizer: "torch.optim.Optimizer | None"
    _opt_names: tuple[str, ...]
    lora_targets: list[str] | None = None

    model: Any

    def trainable(self) -> list[tuple[str, "torch.nn.Parameter"]]:
        return [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]

    def freeze_discarded(self) -> None:
        """Stop training the parameters a strategy discards the update of (`Strategy.discards`): no gradient,
        no optimizer state, no copy kept for the merge. Called when the model is built or rebuilt, before the
        optimizer's parameter names are compared with a checkpoint's."""
        if not getattr(self.config, "freeze_discarded", False):
            return
        for name, p in self.model.named_parameters():
            if p.requires_grad and any(s.discards(name, self) for s in self.strategies):
                p.requires_grad_(False)

    @staticmethod
    def layer_index(name: str) -> int | None:
        """Block of a parameter: 0 = embeddings, i + 1 = transformer layer i, None = outside (pooler)."""
        return _block_of(name)

    def partial_weights(self) -> bool:
        """True when only LoRA weights differ from the base, so only they are saved."""
        return any(s.saves_partial_weights for s in self.strategies)

    def kept_examples(self, examples: Sequence[Any]) -> list[Any]:
        """The examples this model can train on (the retriever drops premises outside its corpus)."""
        return list(examples)

    # -- training -----------------------------------------------------------------------------
    def _ensure_optimizer(self) -> None:
        """AdamW over the trainable parameters; kept across repositories (checkpoint chaining) unless they change."""
        import torch

        names = tuple(n for n, _ in self.trainable())
        if self.optimizer is None or names != self._opt_names:
            self.optimizer = torch.optim.AdamW([p for _, p in self.trainable()], lr=self.lr,
                                               weight_decay=self.config.weight_decay)
            self._opt_names = names

    @property
    def trains(self) -> bool:
        return all(s.trains for s in self.strategies) and self.config.epochs > 0

    def epochs_for(self, n_examples: int) -> int:
        """Passes over a repository of `n_examples`: `epochs`, or more (up to `max_epochs`) until `min_steps`
        gradient steps are reached, so a five-theorem repository is not learned from one or two steps."""
        epochs = self.config.epochs
        if epochs <= 0 or n_examples <= 0:
            return epochs
        per_epoch = -(-n_examples // self.batch_size)
        need = -(-self.config.min_steps // per_epoch)
        return max(epochs, min(need, max(self.config.max_epochs, epochs)))

    def train_repository(self, repo: str, examples: Sequence[Any], step: int, seed: int,
                         partial: Path | None = None, snapshot_seconds: float = 10.0,
                         on_batch: Callable[[int, int, float], None] | None = None) -> dict[str, Any]:
        """Run every strategy's hooks around the passes over `examples`; returns training statistics.

        With `partial` (a directory), the training position is snapshotted there at a batch boundary every
        `snapshot_seconds` (weights, optimizer, both random generators, the epoch's order, the losses so far), and
        a snapshot found there when training starts is resumed from, so Ctrl-C or a kill loses at most that much
        training and the finished weights are identical to an uninterrupted run. `on_batch(done, total, loss)`
        reports progress.
        """
        import torch

        from agent.learn.strategies.base import RepoContext

        start = time.perf_counter()
        run_seed = derive_seed(seed, step, repo)
        set_determinism(run_seed)
        rng = random.Random(run_seed)
        examples = self.kept_examples(examples)
        ctx = RepoContext(learner=self, repo=repo, examples=list(examples), rng=rng, step=step)
        for s in self.strategies:
            s.before_repo(ctx)
        losses: list[float] = []
        terms: dict[str, float] = {}
        batches = 0
        epochs = self.epochs_for(len(examples)) if self.trains else 0
        per_epoch = -(-len(examples) // self.batch_size) if examples else 0
        if self.trains and examples:
            self._ensure_optimizer()
            assert self.optimizer is not None
            identity = {"repo": repo, "step": step, "seed": seed, "examples": len(examples), "epochs": epochs}
            position = _load_position(partial, identity, self) if partial is not None else None
            first_epoch, first_lo, order = 0, 0, None
            if position is not None:
                first_epoch, first_lo, order = position["epoch"], position["lo"], position["order"]
                losses, terms, batches = position["losses"], position["terms"], position["batches"]
                rng.setstate(position["rng"])
                torch.set_rng_state(position["torch_rng"])
                for s in self.strategies:
                    s.load_progress(position["strategies"].get(s.name))
            last_snapshot = time.monotonic()
            self.model.train()
            for epoch in range(first_epoch, epochs):
                if order is None:
                    order = list(range(len(examples)))
                    rng.shuffle(order)
                for lo in range(first_lo if epoch == first_epoch else 0, len(order), self.batch_size):
                    if partial is not None and time.monotonic() - last_snapshot >= snapshot_seconds:
                        _save_position(partial, identity, self, {
                            "epoch": epoch, "lo": lo, "order": order, "losses": losses, "terms": terms,
                            "batches": batches, "rng": rng.getstate(), "torch_rng": torch.get_rng_state(),
                            "strategies": {s.name: s.progress() for s in self.strategies}})
                        last_snapshot = time.monotonic()
                    chunk = [examples[i] for i in order[lo:lo + self.batch_size]]
                    for s in self.strategies:
                        chunk = s.mix(chunk, ctx)
                    batch = self.make_batch(chunk, rng)
                    if not self.usable(batch):
                        continue
                    loss = self.forward(batch)
                    total = loss
                    for s in self.strategies:
                        for name, value in s.loss_terms(batch).items():
                            total = total + value
                            terms[name] = terms.get(name, 0.0) + float(value.detach())
                    self.optimizer.zero_grad(set_to_none=True)
                    total.backward()
                    if self.config.grad_clip > 0:
                        torch.nn.utils.clip_grad_norm_([p for _, p in self.trainable()], self.config.grad_clip)
                    self.optimizer.step()
                    losses.append(float(loss.detach()))
                    del batch, loss, total
                    trim_heap()   # the batch's activations and graph, freed, else stay resident as fragments
                    batches += 1
                    if on_batch is not None:
                        on_batch(epoch * per_epoch + lo // self.batch_size + 1, epochs * per_epoch, losses[-1])
                order = None
            self.model.eval()
        for s in reversed(self.strategies):
            s.after_repo(ctx)
        self.weights_changed()
        return {"repo": repo, "step": step, "examples": len(examples), "batches": batches,
                "epochs": epochs,
                "loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None,
                "loss_mean": sum(losses) / len(losses) if losses else None,
                "terms": {k: v / max(batches, 1) for k, v in terms.items()},
                "seconds": round(time.perf_counter() - start, 3)}

    # -- checkpoints --------------------------------------------------------------------------
    def release_optimizer(self) -> None:
        """Drop the optimizer and its state (twice the trainable weights): after a checkpoint is written, a
        learner that will not train again in this process needs neither (the next step loads them)."""
        self.optimizer = None
        self._opt_names = ()

    def save(self, directory: Path, meta: dict[str, Any], extra: Callable[[Path], None] | None = None,
             release: bool = False) -> Path:
        """Write weights, optimizer and strategy state as one atomic directory (see common.atomic);
        `extra(tmp)` may add files that must appear with them (the generator's merged copy). With `release`,
        the optimizer is dropped once the directory is durable (see :meth:`release_optimizer`)."""
        import torch
        from safetensors.torch import save_file

        full = not self.partial_weights()
        state = {k: v.detach().contiguous() for k, v in self.model.state_dict().items() if full or "lora_" in k}
        meta = {"schema_version": CHECKPOINT_SCHEMA, **self.versions(),
                "strategies": [s.name for s in self.strategies], "weights": self.trains, **meta}
        try:
            with atomic_directory(directory) as tmp:
                if self.trains:
                    save_file(state, str(tmp / "model.safetensors"))
                torch.save({"optimizer": self.optimizer.state_dict() if self.optimizer is not None else None,
                            "optimizer_names": list(self._opt_names),
                            "strategies": {s.name: s.state_dict() for s in self.strategies}}, tmp / "training.pt")
                if extra is not None:
                    extra(tmp)
                (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        except Exception as exc:
            # safetensors and torch report a failed write (disk full, file too large) as their own errors;
            # give the caller the OSError it handles as "the disk refused", anything else stays a bug.
            if isinstance(exc, OSError) or not _IO_FAILURE.search(str(exc)):
                raise
            raise OSError(f"cannot write checkpoint {Path(directory).name}: {exc}") from exc
        if release:
            self.release_optimizer()
        return Path(directory)

    def load(self, directory: Path, with_optimizer: bool = True) -> dict[str, Any]:
        """Restore strategy state (which may rebuild the model, e.g. adapters), weights and, for training,
        the optimizer (a reader that only encodes skips it: it is twice the model's size)."""
        import torch
        from safetensors.torch import load_file

        directory = Path(directory)
        meta = json.loads((directory / "meta.json").read_text(encoding="utf-8"))
        extra = torch.load(directory / "training.pt", map_location="cpu", weights_only=False)
        for s in self.strategies:
            if s.name in extra["strategies"]:
                s.load_state_dict(extra["strategies"][s.name], self)
        self.freeze_discarded()   # a strategy may have rebuilt the model (adapters)
        if (directory / "model.safetensors").exists():
            missing, unexpected = self.model.load_state_dict(load_file(str(directory / "model.safetensors")),
                                                             strict=False)
            if unexpected:
                raise ValueError(f"{directory}: checkpoint weights do not fit the model ({unexpected[0]}, ...)")
        self.weights_changed()
        if with_optimizer and extra.get("optimizer") is not None:
            names = tuple(extra.get("optimizer_names", ()))
            if names == tuple(n for n, _ in self.trainable()):
                self._ensure_optimizer()
                assert self.optimizer is not None
                self.optimizer.load_state_dict(extra["optimizer"])
        return meta


def _block_of(name: str) -> int | None:
    """0 for embedding parameters, i + 1 for `...layer.<i>.` / `...layers.<i>.` / `...h.<i>.` / `...block.<i>.`."""
    parts = name.split(".")
    for k, part in enumerate(parts[:-1]):
        if part in ("layer", "layers", "h", "block") and parts[k + 1].isdigit():
            return int(parts[k + 1]) + 1
    if any(p in ("embeddings", "wte", "wpe", "embed_tokens", "shared") for p in parts):
        return 0
    return None




POSITION_FILE = "position.pt"


def _save_position(directory: Path, identity: dict[str, Any], learner: Learner, position: dict[str, Any]) -> None:
    """A mid-repository snapshot: the trainable weights and optimizer with the loop's position, atomically."""
    import torch

    state = {n: p.detach() for n, p in learner.trainable()}   # saved before the next step changes them: no copy
    with atomic_directory(directory) as tmp:
        torch.save({"identity": identity, "weights": state,
                    "optimizer": learner.optimizer.state_dict() if learner.optimizer is not None else None,
                    **position}, tmp / POSITION_FILE)


def _load_position(directory: Path, identity: dict[str, Any], learner: Learner) -> dict[str, Any] | None:
    """The snapshot in `directory` if it belongs to exactly this training (same repository, step, seed, data);
    its weights and optimizer state are restored into `learner`."""
    import torch

    path = Path(directory) / POSITION_FILE
    if not path.is_file():
        return None
    try:
        position = torch.load(path, map_location="cpu", weights_only=False)
    except Exception:  # noqa: BLE001 - a damaged snapshot only costs the training it would have saved
        return None
    if position.get("identity") != identity:
        return None
    params = dict(learner.trainable())
    if set(position["weights"]) != set(params):
        return None
    with torch.no_grad():
        for name, value in position["weights"].items():
            params[name].copy_(value)
    if position.get("optimizer") is not None and learner.optimizer is not None:
        learner.optimizer.load_state_dict(position["optimizer"])
    return position
