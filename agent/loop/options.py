"""The options a stream's steps compute with, fixed once the stream has started (issue "Results you can
trust", item 11): results stay labelled with the options that produced them."""
from __future__ import annotations

from typing import Any

from agent.config import RunConfig
from common.config_base import to_dict
from common.errors import InputError

# Settings that change how fast or where work runs, never what a step computes.
RESOURCE_OPTIONS = {
    ("memory", "chroma_url"), ("memory", "batch_size"), ("memory", "retrieve_filter"),
    ("prover", "workers"), ("prover", "ray_address"), ("prover", "vllm_url"),
    ("learning", "keep_checkpoints"), ("learning", "snapshot_seconds"), ("learning", "micro_batch"),
    ("learning", "activation_checkpointing"), ("learning", "kept_activation_tokens"), ("learning", "processes"),
    ("curriculum", "strategy"),
}

# Options that came after streams had started and whose default is not what those streams computed with: a record
# without the key started with this value (so resuming such a stream with the new default is a change).
BEFORE_THE_OPTION = {"memory.rerank": "none", "learning.freeze_discarded": False}


def stream_options(config: RunConfig) -> dict[str, Any]:
    """Every option that changes what a step computes, as plain data."""
    data = to_dict(config)
    for section, key in RESOURCE_OPTIONS:
        data.get(section, {}).pop(key, None)
    return data


def _flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in data.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def changed_options(recorded: dict[str, Any], config: RunConfig) -> list[str]:
    """`key: old -> new` for every option that differs from what the stream was started with. An option the
    record lacks is newer than the stream: it counts as recorded at its default (which keeps the behaviour the
    stream started with), so only setting it to something else is a change; or, where the default changed what
    is computed (`BEFORE_THE_OPTION`), at the value the stream started with."""
    old, new = _flat(recorded), _flat(stream_options(config))
    defaults = {**_flat(stream_options(RunConfig())), **BEFORE_THE_OPTION}
    old = {**{k: v for k, v in defaults.items() if k not in old}, **old}
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]


def refuse_changed_options(recorded: dict[str, Any], config: RunConfig, workspace: str) -> None:
    """A started stream keeps its options; a change is refused, naming the way out."""
    changes = changed_options(recorded, config)
    if changes:
        raise InputError(
            f"{workspace}: the stream already started with other options ({'; '.join(changes[:3])}"
            f"{'; ...' if len(changes) > 3 else ''}); its results would be mislabelled. Start a new workspace "
            f"for these options (lifelean -w NEW run ...), or restore lifelean.toml")
