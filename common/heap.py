"""Give freed memory back to the operating system between the loop's steps, and keep the collections that this
takes cheap.

glibc's malloc keeps the pages of freed blocks in its heaps and arenas: a learn step's optimizer state, teacher
and autograd graph, freed, stay resident and fragment the heap that the next step's evaluation and prover
allocate in, so a run's resident set creeps up step after step (make run: +0.2 GB per early step) although the
live tensors are ~0.1 GB. `malloc_trim(0)` returns those pages (Linux man page malloc_trim(3)). Elsewhere
(macOS, musl) there is nothing to call and that part does nothing.

The learner's strategies and the learner refer to each other, so its weights are only freed by the cyclic
collector, which is run first. A full collection walks every tracked object: torch, transformers and chromadb
alone are ~0.4 M of them, 0.25 s a walk, and `make run` collects 56 times. The objects alive after the
baseline row or the first learn step (modules, encoders, stores, loaded repositories) live as long as the run,
so :class:`StepHeap` moves them once into the collector's permanent generation (`gc.freeze`, Python docs
"gc"); later collections walk only what later steps allocated. Leaving the `with` block thaws them, so the
process's collector is as it was.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import sys
from types import TracebackType
from typing import Callable


def release_free_memory() -> bool:
    """Collect garbage and hand free heap pages back to the OS; True where glibc's malloc_trim ran."""
    gc.collect()
    return trim_heap()


def trim_heap() -> bool:
    """Hand free heap pages back to the OS, without a collection: cheap enough to run after every training
    batch, whose activations and gradients, freed, would otherwise stay resident as fragments (a 50-batch learn
    step of `run --seed 1` crept from 1.4 to 2.7 GB; trimmed after each batch it peaks at 1.9 GB)."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


@functools.lru_cache(maxsize=1)
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, looked up once (finding libc runs `ldconfig`); None elsewhere (macOS, musl)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):   # not glibc
        return None
    trim.argtypes = [ctypes.c_size_t]
    return trim


class StepHeap:
    """The heap between the steps of one run: `release()` after a step that freed large blocks; with
    `freeze_survivors=True` (once, after a step that leaves only run-long objects alive) what survives the
    collection is frozen, so later collections skip it. Cyclic garbage made of objects allocated after the
    freeze is still collected; frozen objects are still freed by reference counting."""

    def __init__(self) -> None:
        self.frozen = False

    def release(self, freeze_survivors: bool = False) -> bool:
        gc.collect()
        if freeze_survivors and not self.frozen and gc.get_freeze_count() == 0:   # not someone else's freeze
            gc.freeze()
            self.frozen = True
        return trim_heap()

    def thaw(self) -> None:
        if self.frozen:
            gc.unfreeze()
            self.frozen = False

    def __enter__(self) -> "StepHeap":
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.thaw()
