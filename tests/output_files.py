"""Output files for tests that build a JobResult by hand: bytes put in a temporary file, as the engine keeps them."""

from __future__ import annotations

from pathlib import Path

from core.jobs.engine import OutputFile


def output_file(folder: Path, filename: str, data: bytes, node_id: str = "9") -> OutputFile:
    """Write `data` to a new file in `folder` and describe it as an output named `filename`."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{sum(1 for _ in folder.iterdir()):03d}.out"
    path.write_bytes(data)
    return OutputFile(filename, path, len(data), node_id)
