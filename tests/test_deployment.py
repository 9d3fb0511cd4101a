"""The Docker deployment: Dockerfile and compose.yaml are checked as files; no image is built here."""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

import bot
from tests.e2e_world import Start

ROOT = Path(__file__).resolve().parent.parent
KNOWN = {
    "FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME", "USER",
    "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL",
}  # fmt: skip


def parse_dockerfile(text: str) -> list[tuple[str, str]]:
    """Split a Dockerfile into (instruction, arguments), joining continuation lines and dropping comments."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue  # Docker drops comment lines, also inside a continued instruction
        pending = f"{pending} {stripped}" if pending else stripped
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip()
            continue
        word, _, args = pending.partition(" ")
        if word != word.upper() or word not in KNOWN:
            raise ValueError(f"line {number}: {word!r} is not an uppercase Dockerfile instruction")
        instructions.append((word, args.strip()))
        pending = ""
    if pending:
        raise ValueError("the last instruction ends with a continuation backslash")
    return instructions


def dockerfile() -> list[tuple[str, str]]:
    return parse_dockerfile((ROOT / "Dockerfile").read_text(encoding="utf-8"))


def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def test_the_parser_joins_continuations_and_refuses_lowercase_instructions() -> None:
    text = 'FROM python:3.12-slim\nRUN a \\\n    # a comment\n    && b\nCMD ["x"]\n'
    assert parse_dockerfile(text) == [("FROM", "python:3.12-slim"), ("RUN", "a && b"), ("CMD", '["x"]')]
    with pytest.raises(ValueError, match="line 2: 'run' is not an uppercase Dockerfile instruction"):
        parse_dockerfile("FROM python:3.12-slim\nrun a\n")
    with pytest.raises(ValueError, match="ends with a continuation backslash"):
        parse_dockerfile("FROM python:3.12-slim\nRUN a \\\n")


def test_dockerfile_starts_from_a_slim_python_311_or_newer() -> None:
    instructions = dockerfile()
    assert instructions[0][0] == "FROM"
    match = re.fullmatch(r"python:3\.(\d+)-slim", instructions[0][1])
    assert match is not None and int(match.group(1)) >= 11, instructions[0]
    assert [name for name, _ in instructions].count("FROM") == 1


def test_dockerfile_runs_as_a_non_root_user_from_cmd_on() -> None:
    names = [name for name, _ in dockerfile()]
    users = [(i, args) for i, (name, args) in enumerate(dockerfile()) if name == "USER"]
    start = min(i for i, name in enumerate(names) if name in {"CMD", "ENTRYPOINT"})
    before = [args for i, args in users if i < start]
    assert before, "no USER before CMD/ENTRYPOINT"
    assert before[-1].split(":")[0] not in {"root", "0"}
    assert all(i < start for i, _ in users)  # no later USER switches back


def test_dockerfile_installs_requirements_txt_only() -> None:
    installs = [args for name, args in dockerfile() if name == "RUN" and "pip install" in args]
    assert installs == ["pip install -r requirements.txt"]


def test_dockerfile_keeps_the_job_store_on_the_data_volume() -> None:
    instructions = dockerfile()
    env = " ".join(args for name, args in instructions if name == "ENV")
    assert "JOBS_DB=/data/jobs.sqlite3" in env.split()
    assert ("VOLUME", '["/data"]') in instructions


def test_every_copy_source_exists_and_reaches_the_build_context() -> None:
    ignored = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    copies = [args.split()[:-1] for name, args in dockerfile() if name in {"COPY", "ADD"}]
    sources = [source for args in copies for source in args if not source.startswith("--")]
    assert "requirements.txt" in sources and "bot.py" in sources
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not any(fnmatch.fnmatch(source, p) for p in ignored if not p.startswith("!")), source
    assert ".env" in ignored  # the token never goes into an image


def healthcheck_command() -> str:
    (health,) = [args for name, args in dockerfile() if name == "HEALTHCHECK"]
    match = re.search(r'CMD \["python", "-c", "(.+)"\]$', health)
    assert match is not None, health
    return match.group(1)


@pytest.mark.parametrize(
    ("age", "healthy"), [(0.0, True), (bot.HEARTBEAT_SECONDS * 2, True), (100.0, False), (None, False)]
)
def test_the_healthcheck_passes_only_on_a_recent_heartbeat(tmp_path: Path, age: float | None, healthy: bool) -> None:
    heartbeat = tmp_path / "heartbeat"
    if age is not None:
        heartbeat.touch()
        os.utime(heartbeat, (time.time() - age, time.time() - age))
    code = healthcheck_command().replace("/data/heartbeat", str(heartbeat))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, check=False)
    assert (result.returncode == 0) is healthy


def test_compose_builds_the_bot_from_this_folder_with_its_data_volume() -> None:
    data = compose()
    service = data["services"]["bot"]
    assert service["build"] == {"context": ".", "dockerfile": "Dockerfile"}
    assert (ROOT / service["build"]["dockerfile"]).is_file()
    volumes = [str(v) for v in service["volumes"]]
    named = [v.split(":")[0] for v in volumes if v.split(":")[1] == "/data"]
    assert named and named[0] in data["volumes"]
    for volume in volumes:
        source = volume.split(":")[0]
        if source.startswith("."):
            assert (ROOT / source).exists(), source
    assert service["environment"]["JOBS_DB"].startswith("/data/")


def test_compose_takes_the_token_from_env_and_points_at_the_comfyui_service() -> None:
    data = compose()
    service = data["services"]["bot"]
    assert service["env_file"] == ".env"
    assert (ROOT / ".env.example").is_file()
    assert "DISCORD_TOKEN=" in (ROOT / ".env.example").read_text(encoding="utf-8")
    assert service["environment"]["COMFYUI_URL"] == "http://comfyui:8188"
    assert "comfyui" in service["depends_on"]
    assert data["services"]["comfyui"]["image"].startswith("${COMFYUI_IMAGE")


async def test_heartbeat_is_written_only_while_alive(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat"
    alive = False
    task = asyncio.create_task(bot.heartbeat(path, lambda: alive, 0.01))
    await asyncio.sleep(0.05)
    assert not path.exists()
    alive = True
    await asyncio.sleep(0.05)
    assert path.exists()
    task.cancel()


async def test_an_unwritable_heartbeat_is_logged_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "missing" / "heartbeat"
    task = asyncio.create_task(bot.heartbeat(path, lambda: True, 0.01))
    await asyncio.sleep(0.1)
    task.cancel()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"cannot write the heartbeat file {path}: No such file or directory"]


@pytest.mark.usefixtures("comfy_profile")
async def test_the_running_bot_refreshes_the_heartbeat_next_to_the_job_store(
    start: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bot, "HEARTBEAT_SECONDS", 0.05)
    world = await start()
    path = world.settings.jobs_db.parent / "heartbeat"
    await asyncio.sleep(0.2)  # a few beats after the bot is ready
    first = path.stat().st_mtime_ns
    await asyncio.sleep(0.2)
    assert path.stat().st_mtime_ns > first
    await world.stop_bot()
    stopped = path.stat().st_mtime_ns
    await asyncio.sleep(0.2)
    assert path.stat().st_mtime_ns == stopped
