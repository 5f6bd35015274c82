"""The whole typed configuration of a workspace (`lifelean.toml`), composed of each package's section."""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from agent.learning_config import LearningConfig
from common.atomic import atomic_write_text
from common.config_base import from_dict, option, to_toml
from common.errors import InputError
from curriculum.config import CurriculumConfig
from memory.config import MemoryConfig
from provers.config import ProverConfig

CONFIG_FILE = "lifelean.toml"


@dataclass
class RunConfig:
    seed: int = option(3407, "random seed of training, sampling and splits (LeanAgent's seed)")
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig, metadata={"help": "curriculum"})
    memory: MemoryConfig = field(default_factory=MemoryConfig, metadata={"help": "memory"})
    prover: ProverConfig = field(default_factory=ProverConfig, metadata={"help": "proving"})
    learning: LearningConfig = field(default_factory=LearningConfig, metadata={"help": "learning"})


def load_config(path: Path) -> RunConfig:
    """Read `lifelean.toml`; a missing file means all defaults; bad keys are one-line errors."""
    if not path.exists():
        return RunConfig()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: invalid TOML ({exc})") from None
    try:
        return from_dict(RunConfig, data)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None


def save_config(config: RunConfig, path: Path) -> None:
    atomic_write_text(path, "# lifelean workspace configuration. Every key is optional.\n" + to_toml(config))
