"""The HTTP API front (http_api), through aiohttp's test client against the fake ComfyUI."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request

import bot
from core.config import ApiToken, load_settings
from core.errors import ConfigError, WorkflowError
from core.jobs.engine import Engine
from core.jobs.store import JobRecord, JobState, JobStore
from core.workflows import load_catalog, load_workflow
from http_api.app import ROUTES, _language, make_app
from http_api.jobs import RESTARTED, ApiJobs, api_user_id, clean_outputs
from http_api.serve import NO_TOKENS, serve
from http_api.serve import main as api_main
from tests.conftest import WORKFLOWS
from tests.e2e_world import Start
from tests.fakes.comfyui import FakeComfyUI

ALICE = "alice-token-0123456789"
BOB = "bob-token-9876543210xx"
TOKENS = (ApiToken("alice", ALICE), ApiToken("bob", BOB))


class Api:
    """A running API on the fake ComfyUI, with a client and what it is made of."""

    def __init__(self, client: TestClient[Any, Any], engine: Engine, jobs: ApiJobs, store: JobStore) -> None:
        self.client = client
        self.engine = engine
        self.jobs = jobs
        self.store = store

    async def call(self, method: str, path: str, token: str | None = ALICE, **kwargs: Any) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        headers |= kwargs.pop("headers", {})
        async with self.client.request(method, path, headers=headers, **kwargs) as response:
            return response.status, await response.json()

    async def submit(self, token: str = ALICE, **body: Any) -> tuple[int, Any]:
        return await self.call("POST", "/jobs", token, json=body)

    async def until_ended(self, job_id: str, token: str = ALICE) -> dict[str, Any]:
        deadline = time.monotonic() + 10
        while True:
            status, job = await self.call("GET", f"/jobs/{job_id}", token)
            assert status == 200, job
            if job["state"] in ("done", "failed", "cancelled") or time.monotonic() > deadline:
                return job
            await asyncio.sleep(0.02)


def with_raw_inputs(tmp_path: Path) -> Path:
    """The shipped workflows, /image's binding letting API clients set the sampler's cfg and sampler_name."""
    folder = tmp_path / "workflows"
    shutil.copytree(WORKFLOWS, folder)
    with (folder / "image.toml").open("a", encoding="utf-8") as binding:
        binding.write('\n[api]\nraw_inputs = ["3.cfg", "3.sampler_name"]\n')
    return folder


@contextlib.asynccontextmanager
async def running_api(
    comfy: FakeComfyUI, tmp_path: Path, session: aiohttp.ClientSession, **options: Any
) -> AsyncIterator[Api]:
    """An API on the fake ComfyUI; `options` go to ApiJobs (webhook_secret, allow_private, resolver)."""
    store = await JobStore(tmp_path / "jobs.sqlite3").open()
    engine = Engine(
        session,
        [comfy.url],
        job_timeout=30,
        max_output_bytes=50 * 2**20,
        reconcile_interval=0.3,
        store=store,
        max_pending_per_member=2,
    )
    engine.start()
    jobs = ApiJobs(engine, store, session, tmp_path / "api-outputs", webhook_backoff=0.01, **options)
    await jobs.start()
    workflows = load_catalog(with_raw_inputs(tmp_path)).workflows
    app = make_app(engine, jobs, lambda: workflows, TOKENS)
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield Api(client, engine, jobs, store)
    finally:
        await client.close()
        await jobs.close()
        await engine.close()
        await store.close()


@pytest.fixture
async def api(comfy: FakeComfyUI, tmp_path: Path, session: aiohttp.ClientSession) -> AsyncIterator[Api]:
    async with running_api(comfy, tmp_path, session) as running:
        yield running


@pytest.fixture
async def lan_api(comfy: FakeComfyUI, tmp_path: Path, session: aiohttp.ClientSession) -> AsyncIterator[Api]:
    """The API with HTTP_API_WEBHOOK_ALLOW_PRIVATE=true: webhooks may reach this machine's test receivers."""
    async with running_api(comfy, tmp_path, session, allow_private=True) as running:
        yield running


UNAUTHORIZED = {"error": {"code": "unauthorized", "message": "Send your API token as: Authorization: Bearer <token>."}}
INVALID = {"error": {"code": "unauthorized", "message": "This API token is not valid."}}


async def test_requests_without_a_valid_token_get_401(api: Api) -> None:
    assert await api.call("GET", "/workflows", token=None) == (401, UNAUTHORIZED)
    assert await api.call("GET", "/workflows", headers={"Authorization": f"Basic {ALICE}"}, token=None) == (
        401,
        UNAUTHORIZED,
    )
    assert await api.call("GET", "/workflows", token=ALICE + "x") == (401, INVALID)
    assert await api.call("POST", "/jobs", token="wrong", json={"workflow": "image"}) == (401, INVALID)
    assert await api.call("GET", "/jobs/whatever", token=None) == (401, UNAUTHORIZED)


async def test_workflows_lists_options_with_types_and_limits(api: Api) -> None:
    status, body = await api.call("GET", "/workflows")
    assert status == 200
    by_name = {w["name"]: w for w in body["workflows"]}
    assert sorted(by_name) == ["image", "music", "music_extend", "upscale", "video"]
    image = by_name["image"]
    assert image["kind"] == "image" and by_name["music"]["kind"] == "audio" and by_name["video"]["kind"] == "video"
    options = {o["name"]: o for o in image["options"]}
    assert options["prompt"] == {
        "name": "prompt",
        "type": "text",
        "description": "What the image should show",
        "required": True,
        "max_length": 1000,
    }
    assert image["nodes"] == {"3.cfg": 8, "3.sampler_name": "euler"} and by_name["music"]["nodes"] == {}
    assert options["width"] | {"description": ""} == {
        "name": "width",
        "type": "int",
        "description": "",
        "required": False,
        "min": 256,
        "max": 1024,
        "step": 64,
    }


async def test_submit_poll_and_fetch_the_output(api: Api, comfy: FakeComfyUI) -> None:
    status, job = await api.submit(workflow="image", params={"prompt": "a cat", "seed": 11})
    assert status == 202
    assert job["workflow"] == "image" and job["state"] in ("queued", "running") and job["outputs"] == []
    assert set(job) >= {"id", "workflow", "state", "position", "progress", "error", "outputs"}
    done = await api.until_ended(job["id"])
    assert done["state"] == "done" and done["error"] is None and done["server"]
    [output] = done["outputs"]
    assert output == {
        "name": "ComfyUI_00001_.png",
        "content_type": "image/png",
        "size": len(comfy.files[("output", "", "ComfyUI_00001_.png")]),
        "url": f"/jobs/{job['id']}/outputs/0",
    }
    async with api.client.get(output["url"], headers={"Authorization": f"Bearer {ALICE}"}) as response:
        assert response.status == 200 and response.content_type == "image/png"
        assert await response.read() == comfy.files[("output", "", "ComfyUI_00001_.png")]
    prompt = next(r.json["prompt"] for r in comfy.requests if r.path == "/prompt" and r.method == "POST")
    assert prompt["6"]["inputs"]["text"] == "a cat" and prompt["3"]["inputs"]["seed"] == 11
    record = await api.store.get(job["id"])
    assert record is not None and record.user_id == api_user_id("alice") < 0 and record.reported
    # Another token does not see it, nor its files: the same 404 as an unknown job
    assert await api.call("GET", f"/jobs/{job['id']}", token=BOB) == (
        404,
        {"error": {"code": "not_found", "message": f"There is no job '{job['id']}' of yours."}},
    )
    assert (await api.call("GET", output["url"], token=BOB))[0] == 404
    assert await api.call("GET", f"/jobs/{job['id']}/outputs/1") == (
        404,
        {"error": {"code": "not_found", "message": "This job has no output '1' (it has 1)."}},
    )


async def test_nodes_set_only_the_inputs_the_binding_allows(api: Api, comfy: FakeComfyUI) -> None:
    def refused(message: str) -> tuple[int, dict[str, Any]]:
        return 400, {"error": {"code": "bad_nodes", "message": message}}

    params = {"prompt": "a cat"}
    allowed = "Allowed: 3.cfg, 3.sampler_name."
    assert await api.submit(workflow="image", params=params, nodes={"4.ckpt_name": "x"}) == refused(
        f"nodes: '4.ckpt_name' cannot be set through the API. {allowed}"
    )
    assert await api.submit(workflow="image", params=params, nodes={"6.text": "x"}) == refused(
        f"nodes: '6.text' cannot be set through the API. {allowed}"
    )
    assert await api.submit(workflow="image", params=params, nodes={"3.cfg": "high"}) == refused(
        "nodes: 3.cfg must be a number."
    )
    assert await api.submit(workflow="image", params=params, nodes=["3.cfg"]) == refused(
        '"nodes" must be an object of "node id.input name" keys and values.'
    )
    assert await api.submit(workflow="music", params={"tags": "x"}, nodes={"3.cfg": 2}) == refused(
        "nodes: '3.cfg' cannot be set through the API. Allowed: none."
    )
    status, job = await api.submit(workflow="image", params=params, nodes={"3.cfg": 6.5, "3.sampler_name": "dpmpp_2m"})
    assert status == 202
    assert (await api.until_ended(job["id"]))["state"] == "done"
    prompt = next(r.json["prompt"] for r in comfy.requests if r.path == "/prompt" and r.method == "POST")
    assert prompt["3"]["inputs"] | {"seed": 0} == {
        **prompt["3"]["inputs"],
        "seed": 0,
        "cfg": 6.5,
        "sampler_name": "dpmpp_2m",
    }
    assert prompt["6"]["inputs"]["text"] == "a cat"
    # The loaded workflow is left as it was for the next job
    status, job = await api.submit(workflow="image", params=params)
    await api.until_ended(job["id"])
    last = [r.json["prompt"] for r in comfy.requests if r.path == "/prompt" and r.method == "POST"][-1]
    assert (last["3"]["inputs"]["cfg"], last["3"]["inputs"]["sampler_name"]) == (8, "euler")


async def test_bad_params_are_refused_with_the_reason(api: Api, comfy: FakeComfyUI) -> None:
    def refused(message: str, code: str = "bad_params") -> dict[str, Any]:
        return {"error": {"code": code, "message": message}}

    assert await api.submit(workflow="image", params={"prompt": "   "}) == (400, refused("prompt must not be empty."))
    assert await api.submit(workflow="image", params={"prompt": "x", "steps": 500}) == (
        400,
        refused("steps must be between 1 and 50 (got 500)."),
    )
    assert await api.submit(workflow="image", params={"prompt": "x", "colour": "red"}) == (
        400,
        refused("image has no option 'colour'. Its options are: prompt, negative, seed, steps, width, height."),
    )
    assert await api.submit(workflow="image", params={"prompt": ["x"]}) == (
        400,
        refused("prompt must be a string, a number or true/false."),
    )
    assert await api.submit(workflow="movie", params={}) == (
        404,
        refused(
            "There is no workflow 'movie'. Available: image, music, music_extend, upscale, video.", "unknown_workflow"
        ),
    )
    assert await api.call("POST", "/jobs", data=b"{not json") == (
        400,
        refused("The body must be a JSON object.", "bad_request"),
    )
    assert not [r for r in comfy.requests if r.path == "/prompt"]


async def test_cancel_own_job_but_not_another_tokens(api: Api, comfy: FakeComfyUI) -> None:
    comfy.pause()
    status, job = await api.submit(workflow="image", params={"prompt": "a slow cat"})
    assert status == 202
    await comfy.wait_for(lambda: any(r.path == "/prompt" for r in comfy.requests))
    assert await api.call("DELETE", f"/jobs/{job['id']}", token=BOB) == (
        404,
        {"error": {"code": "not_found", "message": f"There is no job '{job['id']}' of yours."}},
    )
    status, cancelling = await api.call("DELETE", f"/jobs/{job['id']}")
    assert status == 202 and cancelling["id"] == job["id"]
    comfy.resume()
    ended = await api.until_ended(job["id"])
    assert (ended["state"], ended["error"], ended["outputs"]) == ("cancelled", "The job was cancelled.", [])
    assert await api.call("DELETE", f"/jobs/{job['id']}") == (
        409,
        {"error": {"code": "conflict", "message": "This job has already finished."}},
    )
    record = await api.store.get(job["id"])
    assert record is not None and record.state is JobState.CANCELLED


@pytest.mark.abuse
async def test_concurrent_submits_hold_to_the_per_token_pending_limit(api: Api, comfy: FakeComfyUI) -> None:
    comfy.pause()
    answers = await asyncio.gather(*(api.submit(workflow="image", params={"prompt": f"cat {n}"}) for n in range(6)))
    accepted = [body for status, body in answers if status == 202]
    refused = [(status, body) for status, body in answers if status != 202]
    assert len(accepted) == 2, refused
    limit = (
        "You already have 2 job(s) waiting or running; the limit is 2. "
        "Please wait for one to finish, or cancel one with DELETE /jobs/{id}."
    )
    assert refused == [(429, {"error": {"code": "limit", "message": limit}})] * 4
    # Another token is another member: its own limit
    assert (await api.submit(BOB, workflow="image", params={"prompt": "a dog"}))[0] == 202
    comfy.resume()
    for job in accepted:
        assert (await api.until_ended(job["id"]))["state"] == "done"
    assert (await api.submit(workflow="image", params={"prompt": "again"}))[0] == 202  # places given back


async def test_history_lists_the_tokens_jobs_newest_first(api: Api) -> None:
    ids = []
    for prompt in ("one", "two"):
        status, job = await api.submit(workflow="image", params={"prompt": prompt})
        assert status == 202
        await api.until_ended(job["id"])
        ids.append(job["id"])
    status, page = await api.call("GET", "/jobs?mine=1")
    assert status == 200 and page["total"] == 2
    assert [j["id"] for j in page["jobs"]] == ids[::-1]
    assert all(j["state"] == "done" and len(j["outputs"]) == 1 for j in page["jobs"])
    assert await api.call("GET", "/jobs?mine=1", token=BOB) == (200, {"total": 0, "jobs": []})
    assert await api.call("GET", "/jobs?mine=1&limit=0") == (
        400,
        {"error": {"code": "bad_request", "message": "limit must be a whole number from 1 to 100."}},
    )


async def test_a_stored_job_of_an_earlier_run_is_shown_from_the_store(api: Api) -> None:
    finished = JobRecord(
        id="old-done", workflow="image", values={}, state=JobState.FAILED, user_id=api_user_id("alice"), error="x"
    )
    unfinished = JobRecord(
        id="old-running", workflow="image", values={}, state=JobState.RUNNING, user_id=api_user_id("alice")
    )
    await api.store.add(finished)
    await api.store.add(unfinished)
    status, job = await api.call("GET", "/jobs/old-done")
    assert (status, job["state"], job["error"]) == (200, "failed", "x")
    status, job = await api.call("GET", "/jobs/old-running")
    assert (status, job["state"], job["error"]) == (200, "failed", RESTARTED)


async def test_start_ends_the_api_jobs_an_earlier_run_left(api: Api) -> None:
    left = JobRecord(id="left", workflow="image", values={}, state=JobState.RUNNING, user_id=api_user_id("bob"))
    discord_job = JobRecord(id="discord", workflow="image", values={}, state=JobState.RUNNING, user_id=42)
    for record in (left, discord_job):
        await api.store.add(record)
    await api.jobs.start()
    stored = await api.store.get("left")
    assert stored is not None and (stored.state, stored.error, stored.reported) == (JobState.FAILED, RESTARTED, True)
    assert [r.id for r in await api.store.unfinished()] == ["discord"]  # the Discord front's to recover


async def test_the_same_idempotency_key_gives_the_same_job(api: Api, comfy: FakeComfyUI) -> None:
    comfy.pause()
    body = {"workflow": "image", "params": {"prompt": "once"}}
    key = {"Idempotency-Key": "order-17"}
    answers = await asyncio.gather(*(api.call("POST", "/jobs", json=body, headers=key) for _ in range(4)))
    assert sorted(status for status, _ in answers) == [200, 200, 200, 202]
    assert len({job["id"] for _, job in answers}) == 1
    # Another token's same key is its own job
    status, bobs = await api.call("POST", "/jobs", BOB, json=body, headers=key)
    assert status == 202 and bobs["id"] != answers[0][1]["id"]
    comfy.resume()
    await api.until_ended(answers[0][1]["id"])
    status, again = await api.call("POST", "/jobs", json=body, headers=key)
    assert (status, again["id"], again["state"]) == (200, answers[0][1]["id"], "done")
    assert len([r for r in comfy.requests if r.path == "/prompt" and r.method == "POST"]) == 2
    assert await api.call("POST", "/jobs", json=body, headers={"Idempotency-Key": "two words"}) == (
        400,
        {"error": {"code": "bad_request", "message": "Idempotency-Key must be 1 to 200 visible ASCII characters."}},
    )


async def test_the_idempotency_key_survives_a_restart(api: Api, tmp_path: Path, session: aiohttp.ClientSession) -> None:
    key = {"Idempotency-Key": "k1"}
    status, job = await api.call("POST", "/jobs", json={"workflow": "image", "params": {"prompt": "a"}}, headers=key)
    assert status == 202
    await api.until_ended(job["id"])
    # A new process on the same store: the job is no longer live, the key still finds it
    jobs = ApiJobs(api.engine, api.store, session, tmp_path / "api-outputs")
    found, new = await jobs.submit_once("alice", "k1", load_catalog(WORKFLOWS).workflows["image"], {})
    assert (found.id, new) == (job["id"], False)


async def test_the_webhook_is_called_once_after_failures(lan_api: Api, comfy: FakeComfyUI) -> None:
    api = lan_api
    calls: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        calls.append(await request.json())
        return web.Response(status=500 if len(calls) < 3 else 204)

    hooks = web.Application()
    hooks.router.add_post("/hook", hook)
    async with TestServer(hooks) as server:
        url = str(server.make_url("/hook"))
        status, job = await api.submit(workflow="image", params={"prompt": "a"}, webhook=url)
        assert status == 202
        await api.until_ended(job["id"])
        await comfy.wait_for(lambda: len(calls) == 3)
        await asyncio.sleep(0.1)  # no fourth call after the success
    assert len(calls) == 3
    assert calls[-1]["id"] == job["id"] and calls[-1]["state"] == "done" and len(calls[-1]["outputs"]) == 1
    assert await api.submit(workflow="image", params={"prompt": "a"}, webhook="ftp://x") == (
        400,
        {"error": {"code": "bad_request", "message": '"webhook" must be an http:// or https:// address.'}},
    )


async def test_a_webhook_that_never_answers_is_given_up_and_logged(
    lan_api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    api = lan_api
    status, job = await api.submit(workflow="image", params={"prompt": "a"}, webhook="http://127.0.0.1:9/hook")
    assert status == 202
    await api.until_ended(job["id"])
    for _ in range(200):
        if any("failed 4 times" in r.getMessage() for r in caplog.records):
            break
        await asyncio.sleep(0.02)
    assert [r.getMessage() for r in caplog.records if "failed 4 times" in r.getMessage()] == [
        f"webhook of api job {job['id']} to http://127.0.0.1:9/hook failed 4 times (last: ClientConnectorError)"
    ]


async def test_openapi_lists_every_route(api: Api) -> None:
    status, document = await api.call("GET", "/openapi.json", token=None)
    assert status == 200 and document["openapi"].startswith("3.")
    served = {(method.lower(), path) for method, path, _ in ROUTES}
    documented = {(method, path) for path, item in document["paths"].items() for method in item}
    assert documented == served


async def test_unknown_routes_and_methods_answer_json(api: Api) -> None:
    status, body = await api.call("GET", "/nothing")
    assert (status, body["error"]["code"]) == (404, "not_found")
    status, body = await api.call("PUT", "/jobs")
    assert (status, body["error"]["code"]) == (405, "method_not_allowed")


def test_old_output_folders_are_cleaned(tmp_path: Path) -> None:
    old, new = tmp_path / "old-job", tmp_path / "new-job"
    for folder in (old, new):
        folder.mkdir()
        (folder / "001_a.png").write_bytes(b"x")
    now = time.time()
    os.utime(old, (now - 7200, now - 7200))
    assert clean_outputs(tmp_path, 3600, now) == 1
    assert not old.exists() and new.exists()


def test_api_tokens_setting() -> None:
    env = {"WORKFLOWS_DIR": str(WORKFLOWS)}
    settings = load_settings({**env, "HTTP_API_TOKENS": f"alice:{ALICE}, bob:{BOB}"}, require_token=False)
    assert settings.http_api_tokens == TOKENS and settings.http_api_port is None
    assert settings.http_api_host == "127.0.0.1" and settings.http_api_keep_hours == 24
    assert ALICE not in repr(settings)
    with pytest.raises(ConfigError) as caught:
        load_settings(
            {**env, "HTTP_API_TOKENS": "alice:short-secret,bob-no-colon-secret-value,x:" + BOB, "HTTP_API_PORT": "0"},
            require_token=False,
        )
    assert caught.value.problems == [
        "HTTP_API_PORT must be a port number from 1 to 65535, or left empty; got '0'.",
        "HTTP_API_TOKENS: the token of the pair named 'alice' is shorter than 16 characters; make a long random "
        'one, e.g. with: python -c "import secrets; print(secrets.token_urlsafe(32))"',
        "HTTP_API_TOKENS: pair 2 is not name:token (the name: letters, digits, - and _, at most 64).",
    ]
    assert "short-secret" not in caught.value.user_message and "no-colon-secret" not in caught.value.user_message


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def wait_until_served(session: aiohttp.ClientSession, url: str) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            async with session.get(f"{url}/openapi.json") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientConnectionError:
            if time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.05)


async def run_a_job(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    """Submit an image job to a served API, wait for it and return it as finally shown."""
    auth = {"Authorization": f"Bearer {ALICE}"}
    async with session.post(f"{url}/jobs", json={"workflow": "image", "params": {"prompt": "x"}}, headers=auth) as r:
        assert r.status == 202
        job = await r.json()
    for _ in range(500):
        async with session.get(f"{url}/jobs/{job['id']}", headers=auth) as r:
            job = await r.json()
        if job["state"] not in ("queued", "running"):
            break
        await asyncio.sleep(0.02)
    return job


def api_env(tmp_path: Path, port: int) -> dict[str, str]:
    return {
        "HTTP_API_PORT": str(port),
        "HTTP_API_TOKENS": f"alice:{ALICE}",
        "HTTP_API_OUTPUT_DIR": str(tmp_path / "api-outputs"),
    }


async def test_bot_py_api_serves_alone_without_discord(
    comfy: FakeComfyUI, tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    port = free_port()
    env = {
        "COMFYUI_URL": comfy.url,
        "WORKFLOWS_DIR": str(WORKFLOWS),
        "JOBS_DB": str(tmp_path / "jobs.sqlite3"),
        **api_env(tmp_path, port),
    }
    stop = asyncio.Event()
    served = asyncio.create_task(serve(load_settings(env, require_token=False), stop))
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_until_served(session, url)
        job = await run_a_job(session, url)
        assert job["state"] == "done" and len(job["outputs"]) == 1
    finally:
        stop.set()
        await served
    assert (tmp_path / "api-outputs" / job["id"]).is_dir()


def test_bot_py_api_refuses_without_tokens(capsys: pytest.CaptureFixture[str]) -> None:
    settings = load_settings({"WORKFLOWS_DIR": str(WORKFLOWS)}, require_token=False)
    assert api_main(settings) == 2
    assert capsys.readouterr().err == NO_TOKENS + "\n"
    args = bot.parse_args(["api"])
    assert args.command == "api"


async def test_the_bot_serves_the_api_on_its_own_engine(
    start: Start, tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    port = free_port()
    world = await start(settings_env=api_env(tmp_path, port))
    assert world.bot.api is not None and world.bot.api.jobs.engine is world.bot.engine
    url = f"http://127.0.0.1:{port}"
    await wait_until_served(session, url)
    job = await run_a_job(session, url)
    assert job["state"] == "done" and len(job["outputs"]) == 1
    record = await world.bot.store.get(job["id"])
    assert record is not None and record.user_id == api_user_id("alice") and record.reported


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            '[api]\nraw_inputs = "3.cfg"',
            'image.toml: [api] raw_inputs must be a list of "node id.input name" strings, e.g. ["6.text", "3.cfg"].',
        ),
        (
            '[api]\nraw_inputs = ["3.cfg"]\nnodes = 1',
            'image.toml: [api] raw_inputs must be a list of "node id.input name" strings, e.g. ["6.text", "3.cfg"].',
        ),
        (
            '[api]\nraw_inputs = ["3.seed"]',
            "image.toml: [api] raw_inputs: 3.seed is the target of option seed; it is set through that option.",
        ),
        (
            '[api]\nraw_inputs = ["99.cfg"]',
            "image.toml: [api] raw_inputs: target node '99' is not in the workflow.",
        ),
    ],
)
def test_a_bad_api_table_in_a_binding_is_refused(tmp_path: Path, table: str, message: str) -> None:
    shutil.copytree(WORKFLOWS, tmp_path / "w")
    binding = tmp_path / "w" / "image.toml"
    binding.write_text(binding.read_text(encoding="utf-8") + "\n" + table + "\n", encoding="utf-8")
    with pytest.raises(WorkflowError) as caught:
        load_workflow(binding)
    assert caught.value.user_message == message


@pytest.mark.parametrize(
    ("header", "language"),
    [("ja", "ja"), ("zh-CN,zh;q=0.9", "zh-CN"), ("en-GB,ja;q=0.5", None), ("fr, zh;q=0.5", "zh-CN"), ("", None)],
)
def test_errors_are_localized_for_the_first_language_the_bot_speaks(header: str, language: str | None) -> None:
    request = make_mocked_request("GET", "/jobs", headers={"Accept-Language": header})
    assert _language(request) == language


def test_the_image_contains_the_api_package() -> None:
    """bot.py imports http_api: an image without it would not start at all."""
    dockerfile = (WORKFLOWS.parent / "Dockerfile").read_text(encoding="utf-8")
    assert "COPY http_api ./http_api" in dockerfile.splitlines()
