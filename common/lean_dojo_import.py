"""The one way lifelean imports `lean_dojo`.

LeanDojo builds its trace cache object at import time (`lean_dojo/data_extraction/cache.py`): it checks
whether `CACHE_DIR` exists, then creates it without `exist_ok`. Two processes importing it at once on a
machine where the directory does not exist yet (prover workers, Ray actors, `pytest -n 2`) race, and the
loser dies with `FileExistsError` before any Lean runs. Creating the directory first, idempotently, closes
the race; the path is LeanDojo's own rule (`lean_dojo/constants.py`).
"""
from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType


def lean_dojo_cache_dir() -> Path:
    """Where LeanDojo keeps traced repositories: `$CACHE_DIR`, else `~/.cache/lean_dojo`."""
    configured = os.environ.get("CACHE_DIR")
    return (Path(configured) if configured else Path.home() / ".cache" / "lean_dojo").absolute()


def import_lean_dojo() -> ModuleType:
    """`import lean_dojo`, its cache directory made first (raises ImportError when it is not installed)."""
    lean_dojo_cache_dir().mkdir(parents=True, exist_ok=True)
    import lean_dojo

    return lean_dojo
