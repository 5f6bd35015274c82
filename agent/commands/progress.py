"""One progress display for every long command (`add`, `run`/`resume`, `prove`, `evaluate`).

Three outputs from the same calls:

* a terminal (stderr is a TTY, not `--quiet`): rich bars, an outer one ("repository k of N", elapsed, ETA)
  and a transient inner one (training batches, evaluated repositories, proof attempts), with lasting lines
  printed above them (one summary per finished repository);
* anything else (SLURM, nohup, a pipe): plain timestamped lines on stderr, inner progress at most every
  `PLAIN_EVERY` seconds, so a log file stays readable;
* a log file in the workspace (`logs/<command>-<timestamp>.log`), attached only by a command that holds the
  workspace lock: every line of the plain form, `--verbose` details included, whatever the terminal shows.

Verbosity: 0 = `--quiet` (no progress, no summaries: only results and errors), 1 = default, 2 = `--verbose`
(details such as per-phase timings and training statistics are shown too).
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import IO, Any

PLAIN_EVERY = 30.0     # seconds between two plain lines of inner progress


def verbosity_from_context() -> int:
    """The `-q/-v` level of the running `lifelean` command (1 outside a click context)."""
    import click

    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return 1
    return int((ctx.find_root().obj or {}).get("verbosity", 1))


def _stamp() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


def format_seconds(seconds: float | None) -> str:
    if seconds is None or seconds != seconds:
        return "?"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    m, s = divmod(seconds, 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"


class Progress:
    """Progress of one command. Use as a context manager; every method is a no-op where nothing is shown."""

    def __init__(self, enabled: bool = True, verbosity: int | None = None, stream: IO[str] | None = None,
                 live: bool | None = None):
        self.verbosity = verbosity_from_context() if verbosity is None else verbosity
        self.enabled = enabled and self.verbosity > 0
        self.stream = stream or sys.stderr
        is_tty = bool(getattr(self.stream, "isatty", lambda: False)()) and os.environ.get("TERM") != "dumb"
        self.live = self.enabled and (is_tty if live is None else live)
        self._log: IO[str] | None = None
        self._pending: list[str] | None = None
        self.log_path: Path | None = None
        self._rich = None
        self._outer = None
        self._inner = None
        self._inner_label = ""
        self._inner_total: int | None = None
        self._inner_done = 0
        self._last_plain = 0.0
        self.started = time.monotonic()
        self.outer_total = 0
        self.outer_done = 0
        self.outer_text = ""

    # -- life cycle ----------------------------------------------------------------------------
    def __enter__(self) -> "Progress":
        if self.live:
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress as RichProgress, SpinnerColumn,
                                       TextColumn, TimeElapsedColumn)

            from rich.table import Column

            console = Console(file=self.stream)
            # the counts and times never shrink; the description folds, the info is cut last
            self._rich = RichProgress(
                SpinnerColumn(), TextColumn("{task.description}", table_column=Column(overflow="fold", ratio=1)),
                BarColumn(bar_width=16), MofNCompleteColumn(table_column=Column(no_wrap=True)),
                TimeElapsedColumn(table_column=Column(no_wrap=True)),
                TextColumn("{task.fields[info]}", table_column=Column(no_wrap=True, overflow="ellipsis")),
                console=console, transient=True, expand=True)
            self._rich.start()
        return self

    def __exit__(self, exc_type: object = None, *exc: object) -> None:
        self.close(ok=exc_type is None)

    def close(self, ok: bool = True) -> None:
        if self._rich is not None:
            self._rich.stop()
            self._rich = None
        if ok:
            self._open_log()
        if self._log is not None:
            self._log.close()
            self._log = None
        self._pending = None

    def attach_log(self, logs_dir: Path, command: str) -> Path:
        """Log to `logs_dir/<command>-<timestamp>.log` (call only while holding the workspace lock).

        The file is created when real work starts (the first outer item) or when the command ends well; until
        then lines wait in memory, so a command refused early (bad input, changed options) leaves the workspace
        byte-identical, as every failed command must.
        """
        stamp = time.strftime('%Y%m%d-%H%M%S')
        path = logs_dir / f"{command}-{stamp}.log"
        n = 1
        while path.exists():
            n += 1
            path = logs_dir / f"{command}-{stamp}-{n}.log"
        self.log_path = path
        self._pending = [f"{_stamp()} lifelean {' '.join(sys.argv[1:])} (pid {os.getpid()})\n"]
        return path

    def _open_log(self) -> None:
        if self._log is not None or self.log_path is None or self._pending is None:
            return
        try:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = self.log_path.open("a", encoding="utf-8", buffering=1)
            self._log.write("".join(self._pending))
        except OSError:
            self._log = None
        self._pending = None

    # -- lines -----------------------------------------------------------------------------------
    def _write_log(self, text: str) -> None:
        if self._pending is not None:
            self._pending.append(f"{_stamp()} {text}\n")
        elif self._log is not None:
            try:
                self._log.write(f"{_stamp()} {text}\n")
            except OSError:   # a full disk must not stop the run for the sake of its log
                self._log = None

    def _plain(self, text: str) -> None:
        self.stream.write(f"{_stamp()} {text}\n")
        self.stream.flush()

    def line(self, text: str, style: str | None = None) -> None:
        """A lasting line (a summary): above the bars on a terminal, timestamped elsewhere, and in the log."""
        self._write_log(text)
        if not self.enabled:
            return
        if self._rich is not None:
            self._rich.console.print(f"[{style}]{text}[/{style}]" if style else text, markup=bool(style),
                                     highlight=False, overflow="fold")
        else:
            self._plain(text)

    def detail(self, text: str) -> None:
        """A line for `--verbose` (always in the log file)."""
        if self.verbosity >= 2:
            self.line(text, style="dim")
        else:
            self._write_log(text)

    def phase(self, text: str) -> None:
        """What is happening now, with no count (loading, reading): a transient spinner on a terminal; in plain
        mode a line only with `--verbose` (a bad input then fails with its one-line error and nothing else)."""
        self._write_log(text)
        if not self.enabled:
            return
        if self._rich is not None:
            if self._outer is None:
                self._outer = self._rich.add_task(text, total=None, info="")
            else:
                self._rich.update(self._outer, description=text)
        elif self.verbosity >= 2:   # plain mode: a phase that fails must leave only its one-line error
            self._plain(text)

    # -- outer: repository k of N, ETA ----------------------------------------------------------
    def outer(self, total: int, text: str = "") -> None:
        self._open_log()   # real work starts: from here on the log is on disk as it happens
        self.outer_total, self.outer_done, self.outer_text = total, 0, text
        self.started = time.monotonic()
        if self._rich is not None:
            if self._outer is None:
                self._outer = self._rich.add_task(text, total=total, info="")
            else:
                self._rich.update(self._outer, description=text, total=total, completed=0)

    def outer_update(self, text: str, info: str | None = None) -> None:
        """Describe the current item of the outer loop (e.g. "[3/28] Mathlib/Data · learn")."""
        self._open_log()
        self.outer_text = text
        self._write_log(text)
        if not self.enabled:
            return
        if self._rich is not None and self._outer is not None:
            self._rich.update(self._outer, description=text, info=info if info is not None else self.eta_text())
        elif self._rich is None:
            self._plain(text)

    def outer_advance(self, n: float = 1) -> None:
        self.outer_done += n
        if self._rich is not None and self._outer is not None:
            self._rich.update(self._outer, completed=self.outer_done, info=self.eta_text())

    def eta(self) -> float | None:
        """Seconds left, from the mean time of the outer items finished so far in this process."""
        if self.outer_done <= 0 or not self.outer_total:
            return None
        elapsed = time.monotonic() - self.started
        return elapsed / self.outer_done * max(self.outer_total - self.outer_done, 0)

    def eta_text(self) -> str:
        left = self.eta()
        return "ETA after the first item" if left is None else f"ETA {format_seconds(left)}"

    # -- inner: batches, theorems, evaluated repositories -----------------------------------------
    def inner(self, label: str, total: int | None) -> None:
        """Start (or restart) the inner bar."""
        self.inner_end()
        self._inner_label, self._inner_total, self._inner_done = label, total, 0
        self._last_plain = time.monotonic()
        if self._rich is not None:
            self._inner = self._rich.add_task(f"  {label}", total=total, info="")

    def inner_advance(self, n: int = 1, info: str = "", completed: int | None = None) -> None:
        self._inner_done = completed if completed is not None else self._inner_done + n
        if not self.enabled:
            return
        if self._rich is not None:
            if self._inner is None:
                self.inner(self._inner_label or "working", self._inner_total)
            self._rich.update(self._inner, completed=self._inner_done, info=info)
        else:
            now = time.monotonic()
            if now - self._last_plain >= PLAIN_EVERY or (self._inner_total and self._inner_done >= self._inner_total
                                                            and self.verbosity >= 2):
                self._last_plain = now
                of = f"/{self._inner_total}" if self._inner_total else ""
                self._plain(f"  {self._inner_label} {self._inner_done}{of}{' ' + info if info else ''}")

    def inner_total(self, total: int | None) -> None:
        self._inner_total = total
        if self._rich is not None and self._inner is not None:
            self._rich.update(self._inner, total=total)

    def inner_end(self) -> None:
        if self._rich is not None and self._inner is not None:
            self._rich.remove_task(self._inner)
        self._inner = None
        self._inner_done = 0
