"""The repository stands alone: no tracked file names an absolute path of somebody's machine."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.conftest import ROOT

# Home and work folders of Linux, macOS and Windows machines, and any absolute path into a `shared/` folder
# (the steering material that lives beside a checkout, never inside it). A path must start the token: the
# look-behind keeps relative paths (`../shared/`) and URLs (`https://host/home/`) out.
MACHINE_PATH = re.compile(
    r"(?<![\w.~/:-])/(?:home|Users|root|work)/"
    r"|(?<![\w.~/:-])/(?:[\w.-]+/)*shared/"
    r"|\b[A-Za-z]:\\{1,2}Users\b"
)
S = "/"  # the examples below are built with it, so that this file itself names no such path


def tracked_files() -> list[str]:
    if shutil.which("git") is None:
        pytest.skip("git is not installed, so the tracked files cannot be listed")
    result = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=False)
    if result.returncode != 0:
        pytest.skip("not a git checkout, so the tracked files cannot be listed")
    return [name for name in result.stdout.decode("utf-8").split("\0") if name]


def machine_paths(text: str) -> list[tuple[int, str]]:
    """(line number, matched text) of each absolute machine path in a text."""
    return [
        (number, match.group())
        for number, line in enumerate(text.splitlines(), start=1)
        for match in MACHINE_PATH.finditer(line)
    ]


@pytest.mark.parametrize(
    ("text", "found"),
    [
        (f'path = "{S}home/alice/bot"', [f"{S}home/"]),
        (f"see {S}work/shared/docs/x.md", [f"{S}work/"]),
        (f"cd {S}Users/bob && ls", [f"{S}Users/"]),
        (f"HOME={S}root/", [f"{S}root/"]),
        (rf"C:\{'Users'}\carol\ComfyUI", [rf"C:\{'Users'}"]),
        (rf'"C:\\{"Users"}\\carol"', [rf"C:\\{'Users'}"]),
        (f"mounted at {S}srv/team/{'shared'}/ here", [f"{S}srv/team/{'shared'}/"]),
        ("../shared/comfyui-transcripts and shared/docs", []),
        ("https://example.com/home/page and http://x/shared/y", []),
        ("GET /users/@me and /guilds/1/members", []),
        ("ROOT.parent / 'shared' / 'docs'", []),
    ],
)
def test_the_path_pattern_finds_machine_paths_only(text: str, found: list[str]) -> None:
    assert [match for _, match in machine_paths(text)] == found


def test_no_tracked_file_names_an_absolute_machine_path() -> None:
    offenders = []
    for name in tracked_files():
        path = ROOT / name
        if not path.is_file():
            continue  # deleted in the work tree but still tracked
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue  # binary (the gzipped object_info, images)
        text = data.decode("utf-8", errors="replace")
        offenders += [f"{name}:{number}: {match}" for number, match in machine_paths(text)]
    assert offenders == []
