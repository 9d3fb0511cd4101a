"""Files through the HTTP API: multipart/form-data on POST /jobs, checked like a Discord attachment."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import http_api.app
from http_api.jobs import api_user_id
from tests.fakes.comfyui import FakeComfyUI
from tests.test_http_api import ALICE, Api, running_api

PNG = b"\x89PNG\r\n\x1a\n" + bytes(300)
UPSCALE = {"workflow": "upscale", "params": {"scale": 2}}


@pytest.fixture
async def api(comfy: FakeComfyUI, tmp_path: Path, session: aiohttp.ClientSession) -> AsyncIterator[Api]:
    async with running_api(comfy, tmp_path, session) as running:
        yield running


def form(job: Any = UPSCALE, *files: tuple[str, bytes, str | None]) -> aiohttp.MultipartWriter:
    """A multipart body as curl -F makes it: the job's JSON first (unless None), then (name, bytes, filename)."""
    data = aiohttp.MultipartWriter("form-data")
    if job is not None:
        part = data.append(job if isinstance(job, str) else json.dumps(job))
        part.set_content_disposition("form-data", name="job")
    for name, content, filename in files:
        part = data.append(content, {"Content-Type": "application/octet-stream"})
        if filename is None:
            part.set_content_disposition("form-data", name=name)
        else:
            part.set_content_disposition("form-data", quote_fields=False, name=name, filename=filename)  # as curl
    return data


async def post(
    api: Api, data: aiohttp.MultipartWriter | aiohttp.BytesPayload, token: str = ALICE, **headers: str
) -> tuple[int, Any]:
    return await api.call("POST", "/jobs", token, data=data, headers=headers)


def raw(body: bytes, content_type: str) -> aiohttp.BytesPayload:
    """A body sent as it is, with the Content-Type given."""
    return aiohttp.BytesPayload(body, content_type=content_type)


def cut_off() -> aiohttp.BytesPayload:
    """A multipart body that ends inside its file part, before the closing boundary."""
    job = json.dumps(UPSCALE).encode()
    body = (
        b'--B\r\nContent-Disposition: form-data; name="job"\r\n\r\n' + job + b"\r\n"
        b'--B\r\nContent-Disposition: form-data; name="image"; filename="cat.png"\r\n\r\n' + PNG
    )
    return raw(body, "multipart/form-data; boundary=B")


def pending(api: Api) -> int:
    return api.engine.limits.pending(api_user_id("alice"))


async def test_a_file_part_is_uploaded_and_the_job_runs(api: Api, comfy: FakeComfyUI) -> None:
    status, job = await post(api, form(UPSCALE, ("image", PNG, "cat.png")))
    assert status == 202, job
    done = await api.until_ended(job["id"])
    assert done["state"] == "done" and len(done["outputs"]) == 1, done
    assert comfy.files[("input", "discord-bot", "cat.png")] == PNG
    prompt = next(r.json["prompt"] for r in comfy.requests if r.path == "/prompt" and r.method == "POST")
    assert (prompt["1"]["inputs"]["image"], prompt["2"]["inputs"]["scale_by"]) == ("discord-bot/cat.png", 2)
    record = await api.store.get(job["id"])
    assert record is not None and record.values["image"] == "cat.png"
    assert pending(api) == 0


@pytest.mark.abuse
@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("../../" + "x" * 300 + ".png", "x" * 96 + ".png"),  # no folders, and the extension survives the cut
        ("evil name;rm -rf $HOME.PNG", "evil_name_rm_-rf_HOME.PNG"),
        ("/etc/.hidden.png", "hidden.png"),
    ],
)
async def test_an_uploaded_file_name_is_reduced_to_a_safe_one(
    api: Api, comfy: FakeComfyUI, sent: str, kept: str
) -> None:
    status, job = await post(api, form(UPSCALE, ("image", PNG, sent)))
    assert status == 202, job
    assert (await api.until_ended(job["id"]))["state"] == "done"
    assert comfy.files[("input", "discord-bot", kept)] == PNG
    record = await api.store.get(job["id"])
    assert record is not None and record.values["image"] == kept


async def test_the_idempotency_key_works_with_files_also_at_the_limit(api: Api, comfy: FakeComfyUI) -> None:
    comfy.pause()
    key = {"Idempotency-Key": "upload-1"}
    status, first = await post(api, form(UPSCALE, ("image", PNG, "cat.png")), **key)
    assert status == 202
    assert (await api.submit(workflow="image", params={"prompt": "a"}))[0] == 202  # the limit (2) is reached
    status, again = await post(api, form(UPSCALE, ("image", PNG, "cat.png")), **key)
    assert (status, again["id"]) == (200, first["id"])  # the same job, not a refusal
    status, refused = await post(api, form(UPSCALE, ("image", PNG, "cat.png")), **{"Idempotency-Key": "upload-2"})
    assert (status, refused["error"]["code"]) == (429, "limit")
    assert pending(api) == 2
    comfy.resume()
    await api.until_ended(first["id"])
    assert len([r for r in comfy.requests if r.path == "/prompt" and r.method == "POST"]) == 2


def error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


NO_JOB = (
    "A multipart body must start with a part named job holding the job's JSON "
    '({"workflow": NAME, "params": {...}}), then one part per file option.'
)


@pytest.mark.abuse
@pytest.mark.parametrize(
    ("data", "answer"),
    [
        (lambda: form(None, ("image", PNG, "cat.png")), (400, error("bad_request", NO_JOB))),
        (lambda: form(None, ("image", PNG, "cat.png"), ("job", b"{}", None)), (400, error("bad_request", NO_JOB))),
        (
            lambda: form(UPSCALE, ("colour", PNG, "cat.png")),
            (
                400,
                error(
                    "bad_request",
                    "Unknown part 'colour': after the job part, send one part per file option of upscale (image).",
                ),
            ),
        ),
        (
            lambda: form(UPSCALE, ("scale", b"2", "scale.txt")),
            (400, error("bad_params", "scale is not a file option: give it in the job part's params, not as a part.")),
        ),
        (
            lambda: form(UPSCALE, ("image", b"hello", "notes.txt")),
            (
                400,
                error("bad_params", "image must be an image file (png, jpg, jpeg, webp, gif, bmp); got 'notes.txt'."),
            ),
        ),
        (
            lambda: form(UPSCALE, ("image", PNG, None)),
            (400, error("bad_params", "image must be a file, e.g. curl -F image=@cat.png.")),
        ),
        (
            lambda: form(UPSCALE, ("image", PNG, "a.png"), ("image", PNG, "b.png")),
            (400, error("bad_params", "image is given twice.")),
        ),
        (lambda: form(UPSCALE), (400, error("bad_params", "image is required."))),
        (
            lambda: form("{not json", ("image", PNG, "cat.png")),
            (400, error("bad_request", "The body must be a JSON object.")),
        ),
        (
            lambda: form({"workflow": "upscale", "params": {"scale": 9}}, ("image", PNG, "cat.png")),
            (400, error("bad_params", "scale must be between 1 and 4 (got 9).")),
        ),
        (
            lambda: raw(b"--B\r\n", "multipart/form-data"),
            (
                400,
                error(
                    "bad_request",
                    "The multipart body cannot be read: boundary missed for Content-Type: multipart/form-data.",
                ),
            ),
        ),
        (cut_off, (400, error("bad_request", "The multipart body cannot be read: Reading after EOF."))),
    ],
)
async def test_bad_multipart_bodies_get_the_exact_error(
    api: Api, comfy: FakeComfyUI, data: Any, answer: tuple[int, dict[str, Any]]
) -> None:
    assert await post(api, data()) == answer
    assert not [r for r in comfy.requests if r.path in ("/prompt", "/upload/image")]
    assert pending(api) == 0  # the place given back


@pytest.mark.abuse
async def test_a_file_over_the_attachment_cap_is_refused_with_413(
    api: Api, comfy: FakeComfyUI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http_api.app, "MAX_UPLOAD_BYTES", 2**20)  # 50 MB in production: the same check, smaller
    big = PNG + bytes(2**20 + 1 - len(PNG))
    assert await post(api, form(UPSCALE, ("image", big, "cat.png"))) == (
        413,
        error("too_large", "image is larger than 1 MB."),
    )
    assert pending(api) == 0
    status, job = await post(api, form(UPSCALE, ("image", big[: 2**20], "cat.png")))  # just at the cap
    assert status == 202, job
    assert (await api.until_ended(job["id"]))["state"] == "done"
    assert comfy.files[("input", "discord-bot", "cat.png")] == big[: 2**20]


async def test_a_job_part_over_1_mb_is_refused(api: Api) -> None:
    job = json.dumps({**UPSCALE, "pad": "x" * (2**20)})
    assert await post(api, form(job, ("image", PNG, "cat.png"))) == (
        413,
        error("too_large", "The job part must be at most 1024 KB."),
    )
    assert pending(api) == 0


async def test_a_json_body_naming_a_file_option_is_told_how_to_send_it(api: Api) -> None:
    assert await api.submit(workflow="upscale", params={"image": "cat.png"}) == (
        400,
        error(
            "bad_params",
            "image is a file: send the job as multipart/form-data with a part named image "
            "(curl -F 'job=...' -F image=@file).",
        ),
    )


@pytest.mark.abuse
async def test_concurrent_multipart_submits_hold_to_the_per_token_limit(api: Api, comfy: FakeComfyUI) -> None:
    comfy.pause()
    answers = await asyncio.gather(*(post(api, form(UPSCALE, ("image", PNG, f"cat{n}.png"))) for n in range(6)))
    accepted = [job for status, job in answers if status == 202]
    refused = [(status, body) for status, body in answers if status != 202]
    assert len(accepted) == 2, refused
    limit = (
        "You already have 2 job(s) waiting or running; the limit is 2. "
        "Please wait for one to finish, or cancel one with DELETE /jobs/{id}."
    )
    assert refused == [(429, error("limit", limit))] * 4
    assert pending(api) == 2
    comfy.resume()
    for job in accepted:
        assert (await api.until_ended(job["id"]))["state"] == "done"
    assert pending(api) == 0
    uploaded = [name for kind, folder, name in comfy.files if (kind, folder) == ("input", "discord-bot")]
    assert len(uploaded) == 2  # the refused ones never reached the server


async def test_openapi_documents_the_multipart_body(api: Api) -> None:
    status, document = await api.call("GET", "/openapi.json", token=None)
    assert status == 200
    content = document["paths"]["/jobs"]["post"]["requestBody"]["content"]
    multipart = content["multipart/form-data"]["schema"]
    assert multipart["required"] == ["job"] and multipart["properties"]["job"]["contentMediaType"] == "application/json"
    assert content["multipart/form-data"]["encoding"]["job"] == {"contentType": "application/json"}
    assert "413" in document["paths"]["/jobs"]["post"]["responses"]
