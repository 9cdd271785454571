"""Progress of a bulk job, told to a sink the caller owns.

The library draws nothing by itself: engines call a :class:`ProgressSink` (:class:`Silent` by
default); the command line passes :class:`Progress`, a tqdm bar on a terminal (rate, ETA) and a
plain line every few seconds otherwise.  Its own module so both engines can take a sink without
importing each other.
"""
from __future__ import annotations

import sys
import threading
import time
from typing import Any, Protocol, Sequence

from indexer import cli_shared  # LOG_EVERY_S is read at each update: one value for every command

from encoders.inputs import count_inputs


class ProgressSink(Protocol):
    """What a bulk job tells while it runs: ``start`` once (inputs already done by an earlier run),
    ``update`` per committed batch, ``close`` at the end, whether the job finished or not."""

    def start(self, initial: int) -> None: ...

    def update(self, files: int, rows: int, errors: int) -> None: ...

    def close(self) -> None: ...


class Silent:
    """The library's default sink: a job run from Python prints nothing."""

    def start(self, initial: int) -> None:
        pass

    def update(self, files: int, rows: int, errors: int) -> None:
        pass

    def close(self) -> None:
        pass


class Progress:
    """tqdm bar on a terminal (rate, ETA, total counted in a background thread); off one, a plain
    line every LOG_EVERY_S seconds."""

    def __init__(self, specs: Sequence[str], stream: Any = None, verb: str = "classifying",
                 command: str = "retriever run") -> None:
        self.specs, self.verb, self.command = list(specs), verb, command
        self.stream = stream if stream is not None else sys.stderr
        self.files = self.initial = self.rows = self.errors = 0
        self.total: int | None = None
        self.start_time = self.last_log = time.monotonic()
        self.bar = None

    @classmethod
    def for_job(cls, specs: Sequence[str], kind: str) -> "Progress":
        """The display of a ``run`` or ``embed`` job over ``specs``."""
        return cls(specs, verb="embedding" if kind == "embed" else "classifying", command=f"retriever {kind}")

    def start(self, initial: int) -> None:
        from tqdm.auto import tqdm

        self.files = self.initial = initial
        self.start_time = self.last_log = time.monotonic()
        self.bar = tqdm(total=None, initial=initial, unit="file", disable=None, file=self.stream,
                        dynamic_ncols=True, smoothing=0.05, desc=self.verb)
        threading.Thread(target=self._count, args=(self.specs,), daemon=True, name="bulk-count").start()

    def _count(self, specs: list[str]) -> None:
        try:
            self.total = count_inputs(specs)
        except Exception:  # the main enumeration reports input errors properly
            return
        if self.bar is not None and not self.bar.disable:
            self.bar.total = self.total
            self.bar.refresh()

    def update(self, files: int, rows: int, errors: int) -> None:
        self.files += files
        self.rows += rows
        self.errors += errors
        if self.bar is not None and not self.bar.disable:
            self.bar.set_postfix(rows=self.rows, errors=self.errors, refresh=False)
            self.bar.update(files)
            return
        now = time.monotonic()
        if now - self.last_log >= cli_shared.LOG_EVERY_S:
            self.last_log = now
            print(self.line(), file=self.stream, flush=True)

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.start_time, 1e-9)
        done = self.files - self.initial
        rate = done / elapsed
        total = f"/{self.total}" if self.total else ""
        eta = ""
        if self.total and rate > 0:
            left = max(self.total - self.files, 0) / rate
            eta = f", ETA {int(left // 3600)}h{int(left % 3600 // 60):02d}m{int(left % 60):02d}s"
        return (f"{self.command}: {self.files}{total} inputs, {self.rows} rows this run, {self.errors} errors, "
                f"{rate:.1f} inputs/s{eta}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
