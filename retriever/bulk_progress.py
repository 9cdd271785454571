"""Progress of a bulk job: a tqdm bar on a terminal (rate, ETA), a plain line every few seconds
otherwise, nothing when disabled.  Its own module so both engines can take it without importing
each other."""
from __future__ import annotations

import sys
import threading
import time
from typing import Any, Sequence

from indexer import cli_shared  # LOG_EVERY_S is read at each update: one value for every command

from encoders.inputs import count_inputs


class Progress:
    """tqdm bar on a terminal (rate, ETA); periodic plain lines otherwise; nothing when disabled."""

    def __init__(self, enabled: bool, specs: Sequence[str], initial: int, stream: Any = None,
                 verb: str = "classifying", command: str = "retriever run") -> None:
        self.verb, self.command = verb, command
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.files = initial
        self.initial = initial
        self.rows = 0
        self.errors = 0
        self.total: int | None = None
        self.start = time.monotonic()
        self.last_log = self.start
        self.bar = None
        if not enabled:
            return
        from tqdm.auto import tqdm

        self.bar = tqdm(total=None, initial=initial, unit="file", disable=None, file=self.stream,
                        dynamic_ncols=True, smoothing=0.05, desc=verb)
        threading.Thread(target=self._count, args=(list(specs),), daemon=True, name="bulk-count").start()

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
        if not self.enabled:
            return
        if self.bar is not None and not self.bar.disable:
            self.bar.set_postfix(rows=self.rows, errors=self.errors, refresh=False)
            self.bar.update(files)
            return
        now = time.monotonic()
        if now - self.last_log >= cli_shared.LOG_EVERY_S:
            self.last_log = now
            print(self.line(), file=self.stream, flush=True)

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.start, 1e-9)
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
