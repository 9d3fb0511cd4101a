"""Where job outputs wait for delivery: small ones in memory within a budget, the rest in temporary files.

An output up to IN_MEMORY_MAX (uploaded from memory anyway) stays in memory while all jobs together hold
less than the spool's memory budget: writing, reading and deleting a file for each would cost more than
the rest of the job's path. Larger outputs, and everything once the budget is spent, go to disk, so
memory never grows with output size. Temporary files are removed on every path and after a crash.

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
from typing import BinaryIO

log = logging.getLogger(__name__)

# When no job store gives a place for it; one per user, as another user's folder could not be written to
DEFAULT_ROOT = Path(tempfile.gettempdir()) / f"comfyui-discord-bot-{os.getuid()}"
LOCK_SUFFIX = ".lock"
IN_MEMORY_MAX = 8 * 2**20  # an output up to this size may stay in memory
MEMORY_BUDGET = 64 * 2**20  # bytes of outputs all jobs together may hold in memory
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


class Spool:
    """This process's folder of temporary files (one folder per job inside it) and its outputs' memory budget."""

    def __init__(self, root: Path = DEFAULT_ROOT, *, memory_budget: int = MEMORY_BUDGET) -> None:
        self.root = root
        self.memory_budget = memory_budget
        self.in_memory = 0  # bytes of outputs held in memory now
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

    def scratch(self, name: str) -> Scratch:
        """A place for one job's outputs (see Scratch), `name` naming its folder if it needs one."""
        return Scratch(self, name)

    def close(self) -> None:
        """Remove this process's folder and everything still in it."""
        if self._path is None or self._lock is None:
            return
        shutil.rmtree(self._path, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            (self.root / (self._path.name + LOCK_SUFFIX)).unlink()
        os.close(self._lock)
        self._path = self._lock = None


class Scratch:
    """One job's outputs: small ones in memory while the spool's budget allows, the rest in a folder made on
    first use. Whoever holds it calls `discard` once the outputs are delivered, however that ends."""

    def __init__(self, spool: Spool, name: str) -> None:
        self._spool = spool
        self._name = name
        self._folder: Path | None = None
        self._held = 0  # bytes of this job's outputs counted in the spool's budget

    def folder(self) -> Path:
        """The job's folder of temporary files, made now if it does not exist yet."""
        if self._folder is None:
            self._folder = self._spool.folder(self._name)
        return self._folder

    def keep_in_memory(self, size: int) -> bool:
        """Count `size` bytes in the memory budget and return True, or False: the file goes to disk instead."""
        spool = self._spool
        if size > IN_MEMORY_MAX or spool.in_memory + size > spool.memory_budget:
            return False
        spool.in_memory += size
        self._held += size
        return True

    def sink(self, name: str) -> Sink:
        """Somewhere to download one output into, called `name` if it has to be a file."""
        return Sink(self, name)

    def discard(self) -> None:
        """Remove the job's temporary files and give its memory back to the budget (again: nothing happens)."""
        if self._folder is not None:
            discard(self._folder)
            self._folder = None
        self._spool.in_memory -= self._held
        self._held = 0


class Sink:
    """One output as it is downloaded: into memory when its announced size fits the budget, else a new file.

    The downloader calls `start` with the Content-Length (None when not sent), then `write` per chunk (or
    once with the whole file, when `start` said it goes to memory), then `close`; `abort` instead on any
    failure. Then `data` holds the file, or `path` names it.
    """

    def __init__(self, scratch: Scratch, name: str) -> None:
        self._scratch = scratch
        self._name = name
        self._chunks: list[bytes] | None = None
        self._file: BinaryIO | None = None
        self.path: Path | None = None
        self.data: bytes | None = None

    def start(self, length: int | None) -> bool:
        """Get ready for a file of `length` bytes; True when it goes to memory."""
        if length is not None and self._scratch.keep_in_memory(length):
            self._chunks = []
            return True
        self.path = self._scratch.folder() / self._name
        self._file = self.path.open("xb")  # never over an existing file
        return False

    def write(self, chunk: bytes) -> None:
        if self._chunks is not None:
            self._chunks.append(chunk)
        else:
            assert self._file is not None, "start() first"
            self._file.write(chunk)  # into the page cache: cheaper than a thread hop per chunk

    def close(self) -> None:
        if self._chunks is not None:
            self.data, self._chunks = b"".join(self._chunks), None  # one chunk: itself, no copy
        elif self._file is not None:
            self._file.close()

    def abort(self) -> None:
        """Drop what was written (the memory counted stays in the job's budget until `discard`)."""
        self._chunks = None
        if self._file is not None:
            self._file.close()
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            self.path = None


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
