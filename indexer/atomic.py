"""Crash-safe file writes: a reader sees the old file or the new one, never half of one.

Every gallery file is written to a hidden temporary file in the same directory, flushed and
fsync'ed, then moved over the target with ``os.replace`` (atomic on POSIX), and the directory
is fsync'ed so the rename itself survives a power cut.

``crash_point(name)`` is a test hook: when ``$DOCRETRIEVER_TEST_CRASH_AT`` equals ``name`` the
process SIGKILLs itself right there, so tests can prove a writer killed mid-commit leaves the
previous generation intact.
"""
from __future__ import annotations

import json
import os
import signal
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable

CRASH_ENV = "DOCRETRIEVER_TEST_CRASH_AT"
TMP_PREFIX = ".tmp-"


def crash_point(name: str) -> None:
    """Die at once (SIGKILL, no cleanup) if the crash-test hook names this point."""
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
        os._exit(137)  # pragma: no cover - unreachable unless SIGKILL is blocked


def fsync_dir(path: str | os.PathLike) -> None:
    """Make renames inside ``path`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], Any], sync_dir: bool = True) -> None:
    """Write ``path`` through ``write(fileobj)`` into a temporary file, fsync, then rename over it."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f"{TMP_PREFIX}{target.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    if sync_dir:
        fsync_dir(target.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes | memoryview, sync_dir: bool = True) -> None:
    atomic_write(path, lambda fh: fh.write(data), sync_dir=sync_dir)


def atomic_write_json(path: str | os.PathLike, obj: Any, sync_dir: bool = True) -> None:
    """JSON with sorted keys and a trailing newline; NaN/inf refused (they are not JSON)."""
    text = json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n"
    atomic_write_bytes(path, text.encode("utf-8"), sync_dir=sync_dir)


def atomic_write_path(path: str | os.PathLike, write_to: Callable[[str], Any], sync_dir: bool = False) -> None:
    """Like :func:`atomic_write` for writers that need a file *name* (FAISS streams to a path,
    so the index is never copied in memory): ``write_to(tmp_path)``, fsync, rename over ``path``."""
    target = Path(path)
    tmp = target.with_name(f"{TMP_PREFIX}{target.name}.{os.getpid()}")
    try:
        write_to(str(tmp))
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    if sync_dir:
        fsync_dir(target.parent)

