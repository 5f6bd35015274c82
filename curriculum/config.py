"""Curriculum settings ([curriculum] in lifelean.toml)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from common.config_base import option


@dataclass
class CurriculumConfig:
    strategy: Literal["leanagent", "dependency"] = option(
        "leanagent", "order of repositories: 'leanagent' (most Easy theorems first) or 'dependency' "
        "(after the repositories each one depends on, easy-first inside a generation)")
