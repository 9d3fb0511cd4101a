"""What the bot costs at start: heavy libraries stay unloaded until a job needs them."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def test_starting_the_bot_loads_neither_pyav_nor_pillow() -> None:
    # A tenth of a second of every start; only fitting an output file to Discord's upload limit needs them.
    probe = "import sys, bot; print(sorted(m for m in ('av', 'PIL') if m in sys.modules))"
    found = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "[]"


def test_the_bots_own_process_freezes_what_start_up_built_and_collects_less_often() -> None:
    # In a process of its own: frozen objects stay frozen, and a test run must keep collecting its garbage.
    probe = (
        "import gc, bot; before = gc.get_freeze_count(); bot.settle_heap()\n"
        "print(before, gc.get_freeze_count() > 10_000, gc.get_threshold()[0])"
    )
    found = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert found.stdout.split() == ["0", "True", "10000"]
