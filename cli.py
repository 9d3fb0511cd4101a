"""The command line: one-off jobs and nightly batches (`run`) and a health report (`check`), no Discord."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp

from core.comfyui.client import ComfyClient
from core.config import Settings
from core.errors import BotError, ComfyServerError, ComfyUnreachable, InvalidInput
from core.jobs.engine import Engine, JobResult, Progress
from core.workflows import Catalog, InputFile, ParamType, Workflow, load_catalog, validate_graph
from core.workflows.detect import binding_toml


def parse_assignments(pairs: Sequence[str], workflow: Workflow) -> dict[str, Any]:
    """Turn `key=value` words into option values: `key=@file.txt` reads text from a file, and image/audio
    options take a file path (`image=photo.png`), which is uploaded to the server that runs the job."""
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidInput(f'{pair!r} is not a key=value pair (e.g. prompt="a cat").')
        param = workflow.param(key)
        is_file = param is not None and param.type in (ParamType.IMAGE, ParamType.AUDIO)
        if is_file or value.startswith("@"):
            path = Path(value.removeprefix("@"))
            try:
                values[key] = InputFile(path.name, path.read_bytes()) if is_file else path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise InvalidInput(f"{key}: cannot read {str(path)!r}: {exc}") from None
        else:
            values[key] = value
    return values


def find_workflow(catalog: Catalog, name: str) -> Workflow:
    workflow = catalog.workflows.get(name.lstrip("/"))
    if workflow is None:
        known = ", ".join(sorted(catalog.workflows)) or "none"
        raise InvalidInput(f"There is no workflow {name!r}. Available: {known}.")
    return workflow


async def run_jobs(settings: Settings, name: str, pairs: Sequence[str], out: Path, count: int) -> int:
    """Run `count` jobs of one workflow and save their files into `out`; exit code 0 when all succeed."""
    catalog = load_catalog(settings.workflows_dir)
    workflow = find_workflow(catalog, name)
    given = parse_assignments(pairs, workflow)
    seed_param = next((p for p in workflow.params if p.type is ParamType.SEED), None)
    batches = []
    for index in range(count):
        values = dict(given)
        if seed_param and str(given.get(seed_param.name, "")).isdigit() and index:
            values[seed_param.name] = int(given[seed_param.name]) + index  # a fixed seed walks forward
        batches.append(workflow.resolve(values))
    out.mkdir(parents=True, exist_ok=True)

    async with aiohttp.ClientSession() as session:
        engine = Engine(
            session,
            settings.comfyui_urls,
            job_timeout=settings.job_timeout,
            max_output_bytes=settings.max_output_bytes,
        )
        engine.start()
        try:
            results = await asyncio.gather(
                *(_one_job(engine, workflow, values, out, f"[{i + 1}/{count}]") for i, values in enumerate(batches))
            )
        finally:
            await engine.close()
    failed = results.count(False)
    if count > 1:
        print(f"{count - failed} of {count} jobs succeeded.", file=sys.stderr)
    return 1 if failed else 0


async def _one_job(engine: Engine, workflow: Workflow, values: dict[str, Any], out: Path, tag: str) -> bool:
    last = [0.0, ""]

    def show(progress: Progress) -> None:
        text = progress.describe()
        if text != last[1] and time.monotonic() - last[0] >= 1.0:
            last[:] = [time.monotonic(), text]
            print(f"{tag} {text}", file=sys.stderr)

    try:
        result = await engine.run(workflow, values, show)
    except BotError as exc:
        print(f"{tag} failed: {exc.user_message}", file=sys.stderr)
        return False
    for path in save_result(result, out):
        print(path)
    for text in result.texts:
        print(f"{tag} text output: {text}", file=sys.stderr)
    return True


def save_result(result: JobResult, out: Path) -> list[Path]:
    """Write a job's files into `out`, named after the workflow and seed so batches do not collide."""
    seed = result.values.get("seed")
    stem = f"{result.workflow}_{seed}" if seed is not None else f"{result.workflow}_{result.job_id[:8]}"
    paths = []
    for file in result.files:
        path = out / f"{stem}_{Path(file.filename).name}"
        path.write_bytes(file.data)
        paths.append(path)
    return paths


async def check(settings: Settings) -> int:
    """Print whether each server is reachable and can run each workflow; 0 only when all is well."""
    catalog = load_catalog(settings.workflows_dir)
    problems = len(catalog.problems)
    names = ", ".join(f"/{n}" for n in sorted(catalog.workflows)) or "none"
    print(f"Workflows in {settings.workflows_dir}/: {len(catalog.workflows)} command(s) ({names})")
    for problem in catalog.problems:
        print(f"  - {problem}")
    for workflow in catalog.workflows.values():
        if workflow.binding is None:
            print(f"  /{workflow.name}: {workflow.source.name} has no binding file; detected options, which you can")
            print(f"  save as {workflow.source.with_suffix('.toml').name} and adjust:")
            toml = binding_toml(workflow.name, workflow.description, workflow.params)
            print("\n".join(f"      {line}" if line else "" for line in toml.splitlines()))
    if not catalog.workflows:
        problems += 1
        print("  - no usable command: add an API-format .json and its .toml binding.")
    async with aiohttp.ClientSession() as session:
        for url in settings.comfyui_urls:
            client = ComfyClient(session, url)
            try:
                stats = await client.system_stats()
                object_info = await client.object_info()
            except (ComfyUnreachable, ComfyServerError) as exc:
                problems += 1
                state = "NOT reachable" if isinstance(exc, ComfyUnreachable) else "answered with an error"
                print(f"Server {client.name}: {state} ({exc.reason})")
                continue
            version = stats.get("system", {}).get("comfyui_version", "unknown version")
            print(f"Server {client.name}: reachable (ComfyUI {version}, {len(object_info)} node classes)")
            for workflow in catalog.workflows.values():
                found = validate_graph(workflow.graph, object_info)
                problems += len(found)
                verdict = f"{len(found)} problem(s)" if found else "OK"
                print(f"  /{workflow.name} ({workflow.source.name}): {verdict}")
                for line in found:
                    print(f"    - {line}")
    print("All good." if not problems else f"{problems} problem(s) found.")
    return 0 if not problems else 1
