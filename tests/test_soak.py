"""The soak benchmark's accounting (bench/soak.py), on a few hundred jobs: not timed, figures checked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.soak import Ledger, fake_server, prompt_seed, soak
from core.errors import JobLost, JobLostTooOften
from core.jobs.engine import JobResult, Progress
from tests.fakes.comfyui import FakeComfyUI, make_png
from tests.output_files import output_file

SWAPPED = 5  # the job whose saved picture claims to be the next job's


def png_of(seed: int) -> bytes:
    prompt = {"3": {"class_type": "KSampler", "inputs": {"seed": seed}}, "6": {"inputs": {"text": "x"}}}
    return make_png(8, 8, text={"prompt": json.dumps(prompt)})


def result_with(folder: Path, *seeds: int, server: str = "soak00") -> JobResult:
    files = tuple(output_file(folder, f"ComfyUI_{i:05}_.png", png_of(seed)) for i, seed in enumerate(seeds))
    return JobResult("id", "image", {}, server, files, (), 0.1)


def test_prompt_seed_reads_the_sampler_seed_from_the_png_text_chunk() -> None:
    assert prompt_seed(png_of(1234)) == 1234
    assert prompt_seed(make_png(8, 8)) is None


def test_ledger_counts_a_file_delivered_to_the_wrong_job_as_lost_and_duplicated(tmp_path: Path) -> None:
    ledger = Ledger(4)
    ledger.deliver(0, result_with(tmp_path, 0))
    ledger.deliver(1, result_with(tmp_path, 2))  # job 1 got job 2's picture
    ledger.deliver(2, result_with(tmp_path, 2, server="soak01"))
    ledger.progress(3, Progress(resubmitted=True))
    ledger.fail(3, JobLost(detail="not in the queue nor in the history"))
    ledger.progress(0, Progress(position=1))

    figures = ledger.figures()
    assert ledger.delivered == {0, 2}
    assert figures["soak_lost"] == 2  # the wrong one and the failed one
    assert figures["soak_duplicated"] == 1  # job 2's picture arrived twice
    assert figures["soak_resubmitted"] == 1
    assert figures["soak_spread"] == {"min": 1, "max": 2, "stdev": 0.5}
    assert ledger.errors == {
        "wrong output: seeds [2] delivered to the job of seed 1": 1,
        "JobLost: The ComfyUI server lost this job (it restarted or its queue was cleared) before it finished. "
        "Please try again. | not in the queue nor in the history [resubmitted 1x]": 1,
    }


def test_ledger_tells_a_job_given_up_by_design_from_a_lost_one(tmp_path: Path) -> None:
    ledger = Ledger(3)
    ledger.deliver(0, result_with(tmp_path, 0))
    ledger.fail(1, JobLostTooOften(2, detail="not in the queue nor in the history"))
    ledger.fail(2, JobLost(detail="not in the queue nor in the history"))

    figures = ledger.figures()
    assert (figures["soak_lost"], figures["soak_given_up"]) == (1, 1)


def test_ledger_counts_a_job_delivered_twice(tmp_path: Path) -> None:
    ledger = Ledger(1)
    ledger.deliver(0, result_with(tmp_path, 0))
    ledger.deliver(0, result_with(tmp_path, 0))

    assert (ledger.figures()["soak_lost"], ledger.figures()["soak_duplicated"]) == (1, 1)


class SwappingComfyUI(FakeComfyUI):
    """Saves job SWAPPED's picture with the next job's prompt, as a server mixing up two jobs' files would."""

    def _save_images(
        self, image: Any, prefix: Any, kind: str, pnginfo: dict[str, str], *, single: bool = False
    ) -> list[dict[str, Any]]:
        prompt = json.loads(pnginfo["prompt"])
        if prompt["3"]["inputs"]["seed"] == SWAPPED:
            prompt["3"]["inputs"]["seed"] = SWAPPED + 1
            pnginfo = {**pnginfo, "prompt": json.dumps(prompt)}
        return super()._save_images(image, prefix, kind, pnginfo, single=single)


def swapping_server() -> FakeComfyUI:
    return SwappingComfyUI(models=fake_server().models, output_padding=0, sampler_steps=1)


async def test_soak_catches_a_server_that_delivers_another_jobs_file() -> None:
    ledger, figures = await soak(40, servers=2, seed=1, chaos=False, make_server=swapping_server, quiet=True)

    assert (figures["soak_lost"], figures["soak_duplicated"]) == (1, 1)
    assert ledger.errors == {f"wrong output: seeds [{SWAPPED + 1}] delivered to the job of seed {SWAPPED}": 1}
    assert figures["soak_chaos"] == {}


async def test_soak_accounts_for_every_job_while_servers_drop_and_restart() -> None:
    jobs = 300
    # As many in flight as the servers have slots: a job's timeout then measures the chaos, not the bot's queue.
    ledger, figures = await soak(
        jobs, servers=4, seed=3, in_flight=16, chaos_pause=(0.02, 0.1), job_timeout=30, quiet=True
    )

    assert figures["soak_jobs"] == jobs
    chaos = figures["soak_chaos"]
    assert chaos["drop"] > 0 and chaos.get("restart", 0) + chaos.get("outage", 0) > 0
    # Every job is delivered once or lost with its reason; nothing is counted twice or skipped.
    assert (
        figures["soak_lost"] + figures["soak_given_up"] == jobs - len(ledger.delivered) == sum(ledger.errors.values())
    )
    assert sum(ledger.per_server.values()) == len(ledger.delivered)
    assert figures["soak_duplicated"] == 0
    assert figures["soak_lost"] == 0  # failover: no job is lost to the chaos
    assert {error.split(":")[0] for error in ledger.errors} <= {"JobLostTooOften"}  # only as designed
    assert figures["soak_resubmitted"] > 0  # and the chaos did hit jobs
    assert set(figures["soak_spread"]) == {"min", "max", "stdev"}
