"""Temporary files for job outputs, on disk rather than in memory, removed on every path and after a crash.

Each process keeps its files in a folder of its own under a shared root (the bot's: `tmp/` beside JOBS_DB),
locked with flock for as long as the process lives. Opening a spool removes the folders whose lock nobody
holds: what a killed process left behind. So a bot, a `cli.py run` and a test run may share one root.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path

log = logging.getLogger(__name__)

# When no job store gives a place for it; one per user, as another user's folder could not be written to
DEFAULT_ROOT = Path(tempfile.gettempdir()) / f"comfyui-discord-bot-{os.getuid()}"
LOCK_SUFFIX = ".lock"
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


class Spool:
    """This process's folder of temporary files; one folder per job inside it (see `folder`)."""

    def __init__(self, root: Path = DEFAULT_ROOT) -> None:
        self.root = root
        self._path: Path | None = None
        self._lock: int | None = None  # file descriptor holding the flock on <root>/<name>.lock

    @property
    def path(self) -> Path:
        """This process's folder, made (and the root swept) on first use."""
        if self._path is None:
            self.open()
        assert self._path is not None
        return self._path

    def open(self) -> Spool:
        """Remove what dead processes left under the root, then make and lock this process's folder."""
        if self._path is not None:
            return self
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        swept = sweep(self.root)
        if swept:
            log.info("removed %d temporary folder(s) left by a process that ended under %s", swept, self.root)
        while True:
            name = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
            lock = self.root / (name + LOCK_SUFFIX)
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            # A sweeper may have taken the lock in the instant before ours and deleted the file: start again.
            if _same_file(fd, lock):
                break
            os.close(fd)
        folder = self.root / name
        folder.mkdir(mode=0o700)
        self._path, self._lock = folder, fd
        return self

    def folder(self, name: str) -> Path:
        """A new empty folder for one job's files; its owner removes it with `discard`."""
        return Path(tempfile.mkdtemp(prefix=_UNSAFE.sub("_", name)[:40] + "-", dir=self.path))

    def close(self) -> None:
        """Remove this process's folder and everything still in it."""
        if self._path is None or self._lock is None:
            return
        shutil.rmtree(self._path, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            (self.root / (self._path.name + LOCK_SUFFIX)).unlink()
        os.close(self._lock)
        self._path = self._lock = None


def discard(folder: Path) -> None:
    """Remove a job's folder of temporary files (nothing happens when it is already gone)."""
    shutil.rmtree(folder, ignore_errors=True)


def sweep(root: Path) -> int:
    """Remove the folders under `root` whose process is gone (their lock is free); return how many."""
    removed = 0
    for entry in list(root.iterdir()):
        if entry.name.endswith(LOCK_SUFFIX):
            try:
                fd = os.open(entry, os.O_RDWR)
            except FileNotFoundError:
                continue  # another sweeper was quicker
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EACCES):
                    continue  # its process is alive
                raise
            try:
                if _same_file(fd, entry):
                    shutil.rmtree(root / entry.name.removesuffix(LOCK_SUFFIX), ignore_errors=True)
                    entry.unlink()
                    removed += 1
            finally:
                os.close(fd)
        elif entry.is_dir() and not (root / (entry.name + LOCK_SUFFIX)).exists():
            # A lock is made before its folder and removed after it: a folder without one is an orphan.
            shutil.rmtree(entry, ignore_errors=True)
            removed += 1
    return removed


def _same_file(fd: int, path: Path) -> bool:
    """Whether `path` still names the file open as `fd`."""
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False
