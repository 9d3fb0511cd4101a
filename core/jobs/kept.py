"""A finished job's files kept on disk for the buttons under its result (Upscale, Variation, Extend, Re-roll).

One folder per job, `<root>/<job id>/`: a member's attachments as `in-<n>`, chosen outputs as `out-<index>`
(the index of the file in the job's result, which the buttons carry), and `kept.json` naming them. Files
are kept for `keep_hours` (FOLLOWUP_KEEP_HOURS) from the job's end and found from the job id alone, so the
buttons keep working after a restart; after that they are gone and a click is told so. Nothing here is
read whole into memory but a file a follow-up is about to upload (as an attachment would be).
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from core.jobs.engine import OutputFile
from core.jobs.store import SAFE_NAME
from core.workflows.model import InputFile

log = logging.getLogger(__name__)

MANIFEST = "kept.json"
PRUNE_EVERY = 600.0  # seconds between two looks for expired folders: each look reads every job's manifest


class KeptFiles:
    """The follow-up files of finished jobs, under `root`, each job's for `keep_hours`."""

    def __init__(self, root: Path, keep_hours: float, *, clock: Callable[[], float] = time.time) -> None:
        self.root = root
        self.keep_hours = keep_hours
        self._clock = clock
        self._next_prune = 0.0  # when `prune_if_due` looks again

    async def keep(self, job_id: str, inputs: Mapping[str, InputFile], outputs: Mapping[int, OutputFile]) -> None:
        """Keep a job's attachments (by option name) and chosen outputs (by index in its result); OSError if not."""
        await asyncio.to_thread(self._keep, job_id, dict(inputs), dict(outputs))

    def _keep(self, job_id: str, inputs: dict[str, InputFile], outputs: dict[int, OutputFile]) -> None:
        folder = self._folder(job_id)
        folder.mkdir(parents=True, exist_ok=True)
        names: dict[str, Any] = {"kept_at": self._clock(), "inputs": {}, "outputs": {}}
        for number, (param, file) in enumerate(inputs.items()):
            (folder / f"in-{number}").write_bytes(file.data)
            names["inputs"][param] = [f"in-{number}", file.filename]
        for index, output in outputs.items():
            copy = folder / f"out-{index}"
            if output.path is not None:
                shutil.copyfile(output.path, copy)
            else:
                copy.write_bytes(output.read())
            names["outputs"][str(index)] = [copy.name, output.filename]
        (folder / MANIFEST).write_text(json.dumps(names), encoding="utf-8")  # last: a half-kept job has none

    async def kept_input(self, job_id: str, param: str) -> InputFile | None:
        """The attachment a job had for option `param`, or None when it is not (or no longer) kept."""
        return await asyncio.to_thread(self._read, job_id, "inputs", param)

    async def kept_output(self, job_id: str, index: int) -> InputFile | None:
        """Output number `index` of a job's result, as a file to give a follow-up; None when not (or no longer) kept."""
        return await asyncio.to_thread(self._read, job_id, "outputs", str(index))

    def _read(self, job_id: str, group: str, key: str) -> InputFile | None:
        if not SAFE_NAME.fullmatch(job_id):
            return None
        folder = self.root / job_id
        try:
            names = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
            if self._expired(float(names["kept_at"])):
                return None
            entry = names[group].get(key)
            if entry is None:
                return None
            copy, filename = entry
            return InputFile(str(filename), (folder / str(copy)).read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:  # a damaged folder: as if it were gone
            log.warning("kept files of job %s cannot be read: %s", job_id, exc)
            return None

    async def prune_if_due(self) -> int:
        """`prune`, at most once every PRUNE_EVERY seconds (it is asked before each keep)."""
        if self._clock() < self._next_prune:
            return 0
        self._next_prune = self._clock() + PRUNE_EVERY
        return await self.prune()

    async def prune(self) -> int:
        """Delete the folders kept longer than `keep_hours` (and broken ones); return how many went."""
        return await asyncio.to_thread(self._prune)

    def _prune(self) -> int:
        if not self.root.is_dir():
            return 0
        removed = 0
        for folder in self.root.iterdir():
            try:
                kept_at = float(json.loads((folder / MANIFEST).read_text(encoding="utf-8"))["kept_at"])
            except (OSError, ValueError, KeyError, TypeError):
                # No manifest: a keep cut short by a crash, unless it is being written right now (young folder)
                kept_at = folder.stat().st_mtime if folder.exists() else 0.0
            if self._expired(kept_at):
                if folder.is_dir():
                    shutil.rmtree(folder, ignore_errors=True)
                else:
                    folder.unlink(missing_ok=True)
                removed += 1
        if removed:
            log.info("removed the kept files of %d job(s) older than %g hours", removed, self.keep_hours)
        return removed

    def _expired(self, kept_at: float) -> bool:
        return self._clock() - kept_at > self.keep_hours * 3600

    def _folder(self, job_id: str) -> Path:
        if not SAFE_NAME.fullmatch(job_id):
            raise ValueError(f"not a safe file name: {job_id!r}")
        return self.root / job_id
