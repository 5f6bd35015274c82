"""The whole typed configuration of a workspace (`lifelean.toml`), composed of each package's section."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from agent.evaluation.config import EvaluationConfig
from agent.learn.config import LearningConfig
from common.atomic import atomic_write_text
from common.config_base import load_config_file, option, to_toml
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
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig, metadata={"help": "evaluation"})


def load_config(path: Path) -> RunConfig:
    """Read `lifelean.toml`; a missing file means all defaults; any bad content is a one-line error."""
    if not path.exists():
        return RunConfig()
    return load_config_file(RunConfig, path)


def save_config(config: RunConfig, path: Path) -> None:
    atomic_write_text(path, "# lifelean workspace configuration. Every key is optional.\n" + to_toml(config))
