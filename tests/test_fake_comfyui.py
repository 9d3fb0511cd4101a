"""Tests of the fake ComfyUI server itself: the 0.3.64 profile against the recorded transcripts, the current
profile against the documented behaviour of newer ComfyUI."""

from __future__ import annotations

import asyncio
import heapq
import io
import json
import re
import struct
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from PIL import Image

from tests.conftest import TRANSCRIPTS, shared_path
from tests.fakes.comfyui import FakeComfyUI

# --------------------------------------------------------------------------- helpers


def events(name: str) -> list[dict[str, Any]]:
    """The recorded events of one transcript; the test is skipped when ../shared is not beside the repository."""
    path = next(shared_path(TRANSCRIPTS.name).glob(f"{name}_*.json"))
    return json.loads(path.read_text())["events"]


def posts(evs: list[dict[str, Any]], path: str = "/prompt") -> list[dict[str, Any]]:
    return [e for e in evs if e["kind"] == "http" and e["request"]["method"] == "POST" and e["request"]["path"] == path]


def recorded_pids(evs: list[dict[str, Any]]) -> list[str]:
    return [e["response"]["body_json"]["prompt_id"] for e in posts(evs) if e["response"]["status"] == 200]


def summarize_recorded(summary: dict[str, Any]) -> dict[str, Any]:
    kind = summary["event_type"]
    if kind == 1:
        return {"binary": 1, "image_format": summary["image_format"], "size": summary["image_pil"]["size"]}
    if kind == 4:
        return {"binary": 4, "metadata": summary["metadata"], "size": summary["image_pil"]["size"]}
    return {"binary": 3, "node_id": summary["node_id"], "text": summary["text"]}


def summarize_frame(data: bytes) -> dict[str, Any]:
    kind = struct.unpack(">I", data[:4])[0]
    if kind == 1:
        image = Image.open(io.BytesIO(data[8:]))
        return {"binary": 1, "image_format": struct.unpack(">I", data[4:8])[0], "size": list(image.size)}
    if kind == 4:
        length = struct.unpack(">I", data[4:8])[0]
        image = Image.open(io.BytesIO(data[8 + length :]))
        return {"binary": 4, "metadata": json.loads(data[8 : 8 + length]), "size": list(image.size)}
    length = struct.unpack(">I", data[4:8])[0]
    return {"binary": 3, "node_id": data[8 : 8 + length].decode(), "text": data[8 + length :].decode()}


def recorded_ws(evs: list[dict[str, Any]], client: str) -> list[Any]:
    out: list[Any] = []
    for e in evs:
        if e["kind"] == "ws_recv" and e["client"] == client:
            out.append(e["json"] if e["frame"] == "text" else summarize_recorded(e["summary"]))
    return out


def canon(obj: Any, pids: list[str]) -> Any:
    """Prompt ids -> <pidN> (by order of submission), timestamps -> 0; key order kept."""
    if isinstance(obj, dict):
        return {canon(k, pids): 0 if k == "timestamp" else canon(v, pids) for k, v in obj.items()}
    if isinstance(obj, list):
        return [canon(v, pids) for v in obj]
    if isinstance(obj, str) and obj in pids:
        return f"<pid{pids.index(obj)}>"
    return obj


def dumps(items: list[Any], pids: list[str]) -> list[str]:
    """Each item as exact JSON text, so that key order is compared as well."""
    return [json.dumps(canon(item, pids)) for item in items]


def finished(client: Client) -> int:
    """How many `executing {node: null}` (prompt done) messages the client got."""
    return sum(1 for i in client.items if i.get("type") == "executing" and i["data"]["node"] is None)


def kinds(items: list[Any]) -> list[str]:
    return [f"binary{item['binary']}" if "binary" in item else item["type"] for item in items]


class Client:
    """A websocket client that collects every frame in the background."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.items: list[Any] = []
        self.closed = False
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.items.append(json.loads(msg.data))
            elif msg.type == aiohttp.WSMsgType.BINARY:
                self.items.append(summarize_frame(msg.data))
        self.closed = True

    def done(self, prompt_id: str) -> bool:
        return {"type": "executing", "data": {"node": None, "prompt_id": prompt_id}} in self.items

    def has(self, kind: str, **data: Any) -> bool:
        return any(
            item.get("type") == kind and all(item["data"].get(k) == v for k, v in data.items()) for item in self.items
        )

    async def close(self) -> None:
        await self.ws.close()
        await self.task


async def connect(
    session: aiohttp.ClientSession, fake: FakeComfyUI, client_id: str | None, flags: bool = False
) -> Client:
    url = fake.url + "/ws" + (f"?clientId={client_id}" if client_id is not None else "")
    ws = await session.ws_connect(url)
    if flags:
        await ws.send_str(json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}}))
    client = Client(ws)
    await fake.wait_for(lambda: bool(client.items), 2)
    return client


def image_prompt(color: int, prefix: str, client_id: str | None = None, size: int = 8) -> dict[str, Any]:
    """EmptyImage -> SaveImage, the smallest useful prompt."""
    body: dict[str, Any] = {
        "prompt": {
            "1": {
                "class_type": "EmptyImage",
                "inputs": {"width": size, "height": size, "batch_size": 1, "color": color},
            },
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix}},
        }
    }
    if client_id is not None:
        body["client_id"] = client_id
    return body


async def submit(session: aiohttp.ClientSession, fake: FakeComfyUI, body: dict[str, Any]) -> dict[str, Any]:
    async with session.post(fake.url + "/prompt", json=body) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def get_json(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url) as resp:
        assert resp.status == 200
        return await resp.json()


@pytest.fixture
async def fake() -> AsyncIterator[FakeComfyUI]:
    async with FakeComfyUI() as f:
        yield f


# --------------------------------------------------------------------------- scenarios


async def test_02_sequence_observers_history_and_view(fake: FakeComfyUI, session: aiohttp.ClientSession) -> None:
    evs = events("02")
    a = await connect(session, fake, "clientA0000000000000000000000000")
    b = await connect(session, fake, "clientB0000000000000000000000000")
    c = await connect(session, fake, None)
    body = posts(evs)[0]["request"]["body_json"]
    pid = (await submit(session, fake, body))["prompt_id"]
    await fake.wait_for(lambda: a.done(pid) and len(b.items) == 4 and len(c.items) == 4)
    await asyncio.sleep(0.02)

    assert dumps(a.items, [pid]) == dumps(recorded_ws(evs, "A"), recorded_pids(evs))
    assert dumps(b.items, []) == dumps(recorded_ws(evs, "B"), [])
    assert kinds(c.items) == ["status"] * 4
    assert re.fullmatch(r"[0-9a-f]{32}", c.items[0]["data"]["sid"])

    history = await get_json(session, f"{fake.url}/history/{pid}")
    recorded = next(e for e in evs if e["kind"] == "http" and e["request"]["path"].startswith("/history/"))
    assert json.dumps(canon(history, [pid])) == json.dumps(canon(recorded["response"]["body_json"], recorded_pids(evs)))
    assert fake.history[pid] == history[pid]

    for prefix in ("", "/api"):
        async with session.get(f"{fake.url}{prefix}/view?filename=capture02_00001_.png&subfolder=&type=output") as r:
            assert r.status == 200
            assert r.headers["Content-Type"] == "image/png"
            assert r.headers["Content-Disposition"] == 'filename="capture02_00001_.png"'
            data = await r.read()
    assert data == fake.files[("output", "", "capture02_00001_.png")]
    image = Image.open(io.BytesIO(data))
    assert image.size == (64, 48)
    assert image.getpixel((0, 0)) == (0xFF, 0x80, 0x00)  # color 16744448
    for query, status in [
        ("filename=capture02_00001_.png&type=input", 404),
        ("filename=nope.png", 404),
        ("", 404),
        ("filename=../x.png", 400),
        ("filename=x.png&type=bogus", 400),
    ]:
        async with session.get(f"{fake.url}/view?{query}") as r:
            assert r.status == status
            assert await r.read() == b""
            assert "Content-Type" not in r.headers


async def test_05_missing_checkpoint_body_matches(fake: FakeComfyUI, session: aiohttp.ClientSession) -> None:
    evs = events("05")
    recorded = posts(evs)[0]
    async with session.post(fake.url + "/prompt", json=recorded["request"]["body_json"]) as resp:
        assert resp.status == 400
        assert resp.headers["Content-Type"] == "application/json; charset=utf-8"
        text = await resp.text()
    assert text == json.dumps(recorded["response"]["body_json"])
    assert await get_json(session, fake.url + "/models/checkpoints") == []


async def test_12_bad_prompts_match_transcript(fake: FakeComfyUI, session: aiohttp.ClientSession) -> None:
    accepted: list[tuple[dict[str, Any], str]] = []
    for recorded in posts(events("12")):
        request, expected = recorded["request"], recorded["response"]
        if "body_raw" in request:
            kwargs: dict[str, Any] = {"data": request["body_raw"], "headers": {"Content-Type": "application/json"}}
        else:
            kwargs = {"json": request["body_json"]}
        async with session.post(fake.url + "/prompt", **kwargs) as resp:
            label = request["label"]
            assert resp.status == expected["status"], label
            if resp.status == 500:
                assert resp.headers["Content-Type"] == "text/plain; charset=utf-8"
                assert await resp.text() == expected["body_text"], label
            elif resp.status == 400:
                assert await resp.text() == json.dumps(expected["body_json"]), label
            else:
                body = await resp.json()
                assert list(body) == ["prompt_id", "number", "node_errors"]
                assert body["node_errors"] == expected["body_json"]["node_errors"], label
                accepted.append((request["body_json"], body["prompt_id"]))
    await fake.wait_for(lambda: all(pid in fake.history for _, pid in accepted))
    by_label = {json.dumps(body["prompt"]): fake.history[pid] for body, pid in accepted}
    partial = next(h for k, h in by_label.items() if "bad12" in k)
    assert partial["prompt"][4] == ["2"]
    assert list(partial["outputs"]) == ["2"]
    assert partial["prompt"][2]["3"]["inputs"] == {"width": 8, "height": 8, "batch_size": 1}  # stored as sent
    targeted = next(h for k, h in by_label.items() if "pet12b" in k)
    assert targeted["outputs"] == {
        "4": {"images": [{"filename": "pet12b_00001_.png", "subfolder": "", "type": "output"}]}
    }
    coerced = next(h for k, h in by_label.items() if '"width": "64"' in k)
    assert coerced["prompt"][2]["1"]["inputs"]["width"] == 64  # the coerced value is what history keeps


async def test_history_unknown_and_history_ops(fake: FakeComfyUI, session: aiohttp.ClientSession) -> None:
    assert await get_json(session, fake.url + "/history/does-not-exist") == {}
    assert await get_json(session, fake.url + "/object_info/DoesNotExist") == {}
    observer = await connect(session, fake, "observer000000000000000000000000")
    pids = []
    for color in (20, 21, 22):
        body = image_prompt(color, "h")
        pids.append((await submit(session, fake, body))["prompt_id"])
    await fake.wait_for(lambda: all(pid in fake.history for pid in pids))
    # no client_id: no execution_* / executing / executed, but status and progress_state reach every socket
    assert Counter(kinds(observer.items)) == Counter(kinds(recorded_ws(events("10"), "observer")))
    assert list(await get_json(session, fake.url + "/history")) == pids
    assert list(await get_json(session, fake.url + "/history?max_items=2")) == pids[1:]
    assert list(await get_json(session, fake.url + "/history?max_items=1&offset=0")) == pids[:1]
    assert fake.history[pids[2]]["outputs"]["2"]["images"][0]["filename"] == "h_00003_.png"
    assert fake.history[pids[0]]["prompt"][3] == {}
    async with session.post(fake.url + "/history", json={"delete": [pids[0]]}) as resp:
        assert resp.status == 200
    assert await get_json(session, f"{fake.url}/history/{pids[0]}") == {}
    async with session.post(fake.url + "/history", json={"clear": True}) as resp:
        assert resp.status == 200
    assert await get_json(session, fake.url + "/history") == {}


async def test_15_execution_cached_matches_transcript(fake: FakeComfyUI, session: aiohttp.ClientSession) -> None:
    evs = events("15")
    a = await connect(session, fake, "cacheclient000000000000000000000")
    pids = []
    for recorded in posts(evs):
        pid = (await submit(session, fake, recorded["request"]["body_json"]))["prompt_id"]
        await fake.wait_for(lambda pid=pid: a.done(pid))
        pids.append(pid)
    assert dumps(a.items, pids) == dumps(recorded_ws(evs, "A"), recorded_pids(evs))
    assert fake.history[pids[1]]["outputs"] == fake.history[pids[0]]["outputs"]
    assert fake.history[pids[1]]["status"]["messages"][1][1]["nodes"] == ["1", "2"]


async def test_08_interrupt_at_next_node_boundary(session: aiohttp.ClientSession) -> None:
    evs = events("08")
    bodies = [e["request"]["body_json"] for e in posts(evs)]
    async with FakeComfyUI(node_delay=0.05) as fake:
        a = await connect(session, fake, "interrupter000000000000000000000")
        # run 1: POST /interrupt with no body while node 11 runs
        pid1 = (await submit(session, fake, bodies[0]))["prompt_id"]
        await fake.wait_for(lambda: a.has("executing", node="11"))
        fake.pause()  # the worker stops before node 12
        assert (await get_json(session, fake.url + "/queue"))["queue_running"][0][1] == pid1
        async with session.post(fake.url + "/interrupt") as resp:
            assert resp.status == 200
        fake.resume()
        await fake.wait_for(lambda: a.done(pid1))
        # run 2: an interrupt naming another prompt is ignored; naming the running one works
        pid2 = (await submit(session, fake, bodies[1]))["prompt_id"]
        await fake.wait_for(lambda: a.has("executing", node="11", prompt_id=pid2))
        fake.pause()
        async with session.post(fake.url + "/interrupt", json={"prompt_id": pid1}) as resp:
            assert resp.status == 200
        fake.resume()
        await fake.wait_for(lambda: a.has("executing", node="12", prompt_id=pid2))
        fake.pause()
        async with session.post(fake.url + "/interrupt", json={"prompt_id": pid2}) as resp:
            assert resp.status == 200
        fake.resume()
        await fake.wait_for(lambda: a.done(pid2))

    assert kinds(a.items) == kinds(recorded_ws(evs, "A"))
    interrupted = [item["data"] for item in a.items if item["type"] == "execution_interrupted"]
    recorded = [item["data"] for item in recorded_ws(evs, "A") if item["type"] == "execution_interrupted"]
    for mine, theirs in zip(interrupted, recorded, strict=True):
        assert list(mine) == list(theirs)
        assert (mine["node_id"], mine["node_type"], sorted(mine["executed"])) == (
            theirs["node_id"], theirs["node_type"], sorted(theirs["executed"]))  # fmt: skip
    entry = fake.history[pid1]
    assert (entry["status"]["status_str"], entry["status"]["completed"], entry["outputs"]) == ("error", False, {})
    assert [m[0] for m in entry["status"]["messages"]] == [
        "execution_start",
        "execution_cached",
        "execution_interrupted",
    ]


async def test_14_same_client_id_takeover_and_orphan(fake: FakeComfyUI, session: aiohttp.ClientSession) -> None:
    evs = events("14")
    bodies = [e["request"]["body_json"] for e in posts(evs)]
    observer = await connect(session, fake, "clientA1400000000000000000000000")
    d1 = await connect(session, fake, "clientD1400000000000000000000000")
    d2 = await connect(session, fake, "clientD1400000000000000000000000")
    pid = (await submit(session, fake, bodies[2]))["prompt_id"]
    await fake.wait_for(lambda: d2.done(pid))
    assert kinds(d1.items) == ["status"]  # replaced: nothing after its greeting
    assert dumps(d2.items, [pid]) == dumps(recorded_ws(evs, "D2"), recorded_pids(evs)[2:3])

    await d1.close()  # pops the map entry that now belongs to d2
    await fake.wait_for(lambda: "clientD1400000000000000000000000" not in fake.ws_client_ids())
    before = len(d2.items)
    pid2 = (await submit(session, fake, bodies[3]))["prompt_id"]
    await fake.wait_for(lambda: pid2 in fake.history and len(observer.items) >= 7)
    await asyncio.sleep(0.02)
    assert len(d2.items) == before  # orphaned: not even status broadcasts
    assert not d2.closed


async def test_14_reconnect_mid_run_gets_executing_without_prompt_id(session: aiohttp.ClientSession) -> None:
    async with FakeComfyUI(node_delay=0.02) as fake:
        a = await connect(session, fake, "clientA")
        body = image_prompt(44, "r", "clientA")
        fake.pause()
        pid = (await submit(session, fake, body))["prompt_id"]
        await asyncio.sleep(0.02)
        assert fake.queue_snapshot()[1][0][1] == pid  # paused before the prompt: still pending
        fake.resume()
        await fake.wait_for(lambda: a.has("executing", node="1"))
        fake.pause()
        a2 = await connect(session, fake, "clientA")
        await fake.wait_for(lambda: len(a2.items) >= 2)
        assert a2.items[:2] == [
            {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 1}}, "sid": "clientA"}},
            {"type": "executing", "data": {"node": "1"}},
        ]
        count = len(a.items)
        fake.resume()
        await fake.wait_for(lambda: a2.done(pid))
        assert len(a.items) == count


async def test_14_prompt_without_client_id_broadcasts_progress(
    fake: FakeComfyUI, session: aiohttp.ClientSession
) -> None:
    evs = events("14")
    body = posts(evs)[1]["request"]["body_json"]
    assert "client_id" not in body
    part2 = [e for e in evs if 31 <= e["seq"] < 69]
    a = await connect(session, fake, "clientA1400000000000000000000000")
    c = await connect(session, fake, None)
    pid = (await submit(session, fake, body))["prompt_id"]
    await fake.wait_for(lambda: pid in fake.history and all(kinds(x.items).count("status") == 4 for x in (a, c)))
    await asyncio.sleep(0.02)
    for mine, theirs in ((a, "A"), (c, "C")):
        recorded = recorded_ws(part2, theirs)
        # the two output nodes may run in either order (ComfyUI walks a set of outputs): compare loosely
        assert Counter(kinds(mine.items[1:])) == Counter(kinds(recorded))
        exact = [i for i in mine.items if i.get("type") == "progress" or "binary" in i]
        assert dumps(exact, [pid]) == dumps([i for i in recorded if i.get("type") == "progress" or "binary" in i],
                                            recorded_pids(part2))  # fmt: skip


async def test_16_restart_drops_sockets_and_state(session: aiohttp.ClientSession) -> None:
    body = posts(events("16"))[0]["request"]["body_json"]
    async with FakeComfyUI() as fake:
        url = fake.url
        quick = image_prompt(7, "keep")
        first = await submit(session, fake, quick)
        await fake.wait_for(lambda: first["prompt_id"] in fake.history)
        fake.node_delay = 0.05
        a = await connect(session, fake, "restartclient0000000000000000000")
        pid = (await submit(session, fake, body))["prompt_id"]
        await fake.wait_for(lambda: a.has("executing", prompt_id=pid))
        restarting = asyncio.create_task(fake.restart(downtime=0.3))
        await fake.wait_for(lambda: a.closed)
        assert a.ws.close_code == 1006  # no close frame
        with pytest.raises(aiohttp.ClientConnectorError):
            await session.get(url + "/queue")
        with pytest.raises(aiohttp.ClientConnectorError):
            await session.ws_connect(url + "/ws?clientId=restartclient0000000000000000000")
        await restarting
        assert fake.url == url
        a2 = await connect(session, fake, "restartclient0000000000000000000")
        assert a2.items == [{"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}},
                                                        "sid": "restartclient0000000000000000000"}}]  # fmt: skip
        assert await get_json(session, f"{url}/history/{pid}") == {}
        assert await get_json(session, f"{url}/history/{first['prompt_id']}") == {}
        assert await get_json(session, url + "/queue") == {"queue_running": [], "queue_pending": []}
        async with session.get(url + "/view?filename=keep_00001_.png") as resp:
            assert resp.status == 200  # files live on disk: they survive
        fake.node_delay = 0
        again = await submit(session, fake, quick)
        assert again["number"] == 0
        await fake.wait_for(lambda: a2.has("status") and again["prompt_id"] in fake.history)
        assert fake.history[again["prompt_id"]]["outputs"]["2"]["images"][0]["filename"] == "keep_00002_.png"


async def test_03_binary_preview_frames(fake: FakeComfyUI, session: aiohttp.ClientSession) -> None:
    evs = events("03")
    bodies = [e["request"]["body_json"] for e in posts(evs)]
    legacy = await connect(session, fake, "legacy00000000000000000000000000")
    pid1 = (await submit(session, fake, bodies[0]))["prompt_id"]
    await fake.wait_for(lambda: legacy.done(pid1))
    await legacy.close()
    modern = await connect(session, fake, "modern00000000000000000000000000", flags=True)
    pid2 = (await submit(session, fake, bodies[1]))["prompt_id"]
    await fake.wait_for(lambda: modern.done(pid2))
    pids = recorded_pids(evs)
    assert dumps(legacy.items, [pid1]) == dumps(recorded_ws(evs, "L"), pids[:1])
    assert dumps(modern.items, [pid2]) == dumps(recorded_ws(evs, "M"), pids[1:])
    assert fake.history[pid2]["outputs"] == {}
    assert fake.history[pid2]["meta"] == {}


async def test_06_fail_nodes_execution_error(session: aiohttp.ClientSession) -> None:
    evs = events("06")
    recorded = posts(evs)[0]
    body = recorded["request"]["body_json"]
    async with FakeComfyUI(models={"checkpoints": ["v1-5-pruned-emaonly-fp16.safetensors"]}) as fake:
        fake.fail_nodes["CheckpointLoaderSimple"] = (
            "safetensors._safetensors_rust.SafetensorError",
            "Error while deserializing header: header too small\n",
        )
        a = await connect(session, fake, "sd15client000000000000000000000b")
        pid = (await submit(session, fake, body))["prompt_id"]
        await fake.wait_for(lambda: a.done(pid))
    theirs = recorded_ws(evs, "A")[: len(a.items)]
    assert kinds(a.items) == kinds(theirs)
    mine_err = next(i["data"] for i in a.items if i["type"] == "execution_error")
    their_err = next(i["data"] for i in theirs if i["type"] == "execution_error")
    assert list(mine_err) == list(their_err)
    for key in ("node_id", "node_type", "executed", "exception_message", "exception_type", "current_inputs"):
        assert mine_err[key] == their_err[key], key
    assert sorted(mine_err["current_outputs"]) == sorted(their_err["current_outputs"])
    assert all(isinstance(line, str) for line in mine_err["traceback"])
    history = fake.history[pid]
    assert history["prompt"][2]["3"]["inputs"]["cfg"] == 8.0  # FLOAT coerced
    assert (history["status"]["status_str"], history["status"]["completed"], history["outputs"]) == ("error", False, {})
    assert [m[0] for m in history["status"]["messages"]] == ["execution_start", "execution_cached", "execution_error"]


async def test_17_19_text_frame_preview_any_preview_image(fake: FakeComfyUI, session: aiohttp.ClientSession) -> None:
    evs = events("19")
    a = await connect(session, fake, "textA19000000000000000000000000a")
    b = await connect(session, fake, "textB19000000000000000000000000b")
    pid = (await submit(session, fake, posts(evs)[0]["request"]["body_json"]))["prompt_id"]
    await fake.wait_for(lambda: a.done(pid) and any("binary" in i for i in b.items))
    assert dumps(a.items, [pid]) == dumps(recorded_ws(evs, "A"), recorded_pids(evs))
    assert {"binary": 3, "node_id": "2", "text": "width: 10, height: 20\n batch size: 1"} in b.items

    body17 = posts(events("17"))[0]["request"]["body_json"]
    body17["client_id"] = "textA19000000000000000000000000a"
    pid17 = (await submit(session, fake, body17))["prompt_id"]
    await fake.wait_for(lambda: a.done(pid17))
    outputs = fake.history[pid17]["outputs"]
    assert outputs["3"] == {"text": ["24"]}
    names = [image["filename"] for image in outputs["4"]["images"]]
    assert len(names) == 3
    assert all(re.fullmatch(r"ComfyUI_temp_[a-z]{5}_0000[123]_\.png", n) for n in names)
    assert {image["type"] for image in outputs["4"]["images"]} == {"temp"}
    async with session.get(f"{fake.url}/view?filename={names[0]}&subfolder=&type=temp") as resp:
        assert Image.open(io.BytesIO(await resp.read())).size == (24, 12)


async def test_output_padding_keeps_png_valid(session: aiohttp.ClientSession) -> None:
    async with FakeComfyUI(output_padding=1_000_000, image_size=(32, 16)) as fake:
        body = image_prompt(0, "big/pad")
        body["prompt"]["1"] = {"class_type": "LoadImage", "inputs": {"image": "example.png"}}
        pid = (await submit(session, fake, body))["prompt_id"]
        await fake.wait_for(lambda: pid in fake.history)
        assert fake.history[pid]["outputs"]["2"]["images"] == [{"filename": "pad_00001_.png", "subfolder": "big",
                                                                 "type": "output"}]  # fmt: skip
        async with session.get(f"{fake.url}/view?filename=pad_00001_.png&subfolder=big") as resp:
            data = await resp.read()
    assert len(data) > 1_000_000
    image = Image.open(io.BytesIO(data))
    image.load()
    assert image.size == (32, 16)


async def test_http_failures_and_recorded_requests(fake: FakeComfyUI, session: aiohttp.ClientSession) -> None:
    fake.http_failures.append(("POST", "/prompt", 503))
    body = image_prompt(0, "x")
    async with session.post(fake.url + "/api/prompt", json=body) as resp:
        assert resp.status == 503
    assert fake.http_failures == []
    result = await submit(session, fake, body)
    assert result["number"] == 0  # the injected failure never reached the handler
    await session.get(fake.url + "/queue?x=1")
    assert [(r.method, r.path) for r in fake.requests] == [
        ("POST", "/api/prompt"),
        ("POST", "/prompt"),
        ("GET", "/queue"),
    ]
    assert fake.requests[1].json == body
    assert fake.requests[2].query == {"x": "1"}
    async with session.get(fake.url + "/nope") as resp:
        assert resp.status == 404


async def test_upload_and_load_image(fake: FakeComfyUI, session: aiohttp.ClientSession) -> None:
    from tests.fakes.comfyui import make_png

    png_a, png_b = make_png(20, 10, (1, 2, 3)), make_png(20, 10, (4, 5, 6))

    async def upload(data: bytes, **fields: str) -> tuple[int, Any]:
        form = aiohttp.FormData()
        form.add_field("image", data, filename="capture11.png", content_type="image/png")
        for key, value in fields.items():
            form.add_field(key, value)
        async with session.post(fake.url + "/upload/image", data=form) as resp:
            return resp.status, (await resp.json() if resp.status == 200 else None)

    assert await upload(png_a) == (200, {"name": "capture11.png", "subfolder": "", "type": "input"})
    assert await upload(png_a) == (200, {"name": "capture11.png", "subfolder": "", "type": "input"})
    assert await upload(png_b) == (200, {"name": "capture11 (1).png", "subfolder": "", "type": "input"})
    assert await upload(png_b, overwrite="true") == (200, {"name": "capture11.png", "subfolder": "", "type": "input"})
    assert await upload(png_a, subfolder="bot/uploads") == (
        200, {"name": "capture11.png", "subfolder": "bot/uploads", "type": "input"})  # fmt: skip
    assert (await upload(png_a, subfolder="../../"))[0] == 400
    info = await get_json(session, fake.url + "/object_info/LoadImage")
    assert info["LoadImage"]["input"]["required"]["image"][0] == ["capture11 (1).png", "capture11.png", "example.png"]

    body = image_prompt(0, "capture11")
    body["prompt"]["1"] = {"class_type": "LoadImage", "inputs": {"image": "bot/uploads/capture11.png"}}
    pid = (await submit(session, fake, body))["prompt_id"]
    await fake.wait_for(lambda: pid in fake.history)
    saved = fake.files[("output", "", "capture11_00001_.png")]
    assert Image.open(io.BytesIO(saved)).size == (20, 10)

    body["prompt"]["1"]["inputs"]["image"] = "missing.png"
    async with session.post(fake.url + "/prompt", json=body) as resp:
        errors = (await resp.json())["node_errors"]["1"]["errors"]
    assert resp.status == 400
    assert errors[0]["type"] == "custom_validation_failed"
    assert errors[0]["details"] == "image - Invalid image file: missing.png"


async def test_models_knob_fills_combos_and_validation(session: aiohttp.ClientSession) -> None:
    loras = [f"lora{i}.safetensors" for i in range(25)]
    async with FakeComfyUI(models={"checkpoints": ["sd15.safetensors"], "loras": loras,
                                   "upscale_models": ["x4.pth"]}) as fake:  # fmt: skip
        info = await get_json(session, fake.url + "/object_info")
        assert len(info) == 496
        assert info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0] == ["sd15.safetensors"]
        assert info["VAELoader"]["input"]["required"]["vae_name"][0] == ["pixel_space"]
        assert info["UpscaleModelLoader"]["input"]["required"]["model_name"][1]["options"] == ["x4.pth"]
        assert await get_json(session, fake.url + "/api/models/checkpoints") == ["sd15.safetensors"]
        async with session.get(fake.url + "/models/does_not_exist") as resp:
            assert resp.status == 404
            assert await resp.read() == b""
        fake.models["vae"] = ["ae.safetensors"]
        info = await get_json(session, fake.url + "/object_info/VAELoader")
        assert info["VAELoader"]["input"]["required"]["vae_name"][0] == ["ae.safetensors", "pixel_space"]

        body = {"prompt": {
            "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15.safetensors"}},
            "10": {"class_type": "LoraLoader", "inputs": {"model": ["4", 0], "clip": ["4", 1], "lora_name": "nope",
                                                          "strength_model": 1, "strength_clip": 1}},
            "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 32, "height": 24, "batch_size": 2}},
            "3": {"class_type": "KSampler", "inputs": {"model": ["10", 0], "seed": 1, "steps": 4, "cfg": 7,
                  "sampler_name": "euler", "scheduler": "normal", "positive": ["6", 0], "negative": ["6", 0],
                  "latent_image": ["5", 0], "denoise": 1}},
            "6": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["10", 1], "text": "a cat"}},
            "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
            "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "sd"}},
        }, "client_id": "k"}  # fmt: skip
        async with session.post(fake.url + "/prompt", json=body) as resp:
            result = await resp.json()
        assert resp.status == 400
        error = result["node_errors"]["10"]["errors"][0]
        assert error["details"] == "lora_name: 'nope' not in (list of length 25)"
        assert error["extra_info"]["input_config"] is None

        body["prompt"]["10"]["inputs"]["lora_name"] = "lora3.safetensors"
        a = await connect(session, fake, "k")
        fake.sampler_steps = 3
        pid = (await submit(session, fake, body))["prompt_id"]
        await fake.wait_for(lambda: a.done(pid))
        progress = [i["data"] for i in a.items if i["type"] == "progress"]
        assert progress == [{"value": v, "max": 3, "prompt_id": pid, "node": "3"} for v in (1, 2, 3)]
        assert next(i["data"]["node"] for i in a.items if i["type"] == "executing") == "4"
        images = fake.history[pid]["outputs"]["9"]["images"]
        assert [i["filename"] for i in images] == ["sd_00001_.png", "sd_00002_.png"]
        assert Image.open(io.BytesIO(fake.files[("output", "", "sd_00001_.png")])).size == (32, 24)


async def test_audio_outputs_share_the_counter(fake: FakeComfyUI, session: aiohttp.ClientSession) -> None:
    form = aiohttp.FormData()
    form.add_field("image", b"RIFF....WAVEfmt ", filename="tone.wav", content_type="audio/wav")
    async with session.post(fake.url + "/upload/image", data=form) as resp:
        assert resp.status == 200
    body = {"prompt": {
        "1": {"class_type": "LoadAudio", "inputs": {"audio": "tone.wav"}},
        "2": {"class_type": "SaveAudio", "inputs": {"audio": ["1", 0], "filename_prefix": "audio/t"}},
        "3": {"class_type": "SaveAudioMP3", "inputs": {"audio": ["1", 0], "filename_prefix": "audio/t",
              "quality": "V0"}},
        "4": {"class_type": "SaveAudioOpus", "inputs": {"audio": ["1", 0], "filename_prefix": "audio/t",
              "quality": "64k"}},
        "5": {"class_type": "PreviewAudio", "inputs": {"audio": ["1", 0]}},
    }}  # fmt: skip
    pid = (await submit(session, fake, body))["prompt_id"]
    await fake.wait_for(lambda: pid in fake.history)
    outputs = fake.history[pid]["outputs"]
    names = sorted(outputs[n]["audio"][0]["filename"] for n in ("2", "3", "4"))
    assert names == ["t_00001_.flac", "t_00002_.mp3", "t_00003_.opus"]
    assert fake.files[("output", "audio", "t_00001_.flac")].startswith(b"fLaC")
    assert fake.files[("output", "audio", "t_00002_.mp3")].startswith(b"ID3")
    assert fake.files[("output", "audio", "t_00003_.opus")].startswith(b"OggS")
    assert outputs["5"]["audio"][0]["type"] == "temp"
    async with session.get(fake.url + "/view?filename=t_00002_.mp3&subfolder=audio") as resp:
        assert resp.headers["Content-Type"] == "audio/mpeg"
    body["prompt"]["1"]["inputs"]["audio"] = "nope.wav"
    async with session.post(fake.url + "/prompt", json=body) as resp:
        assert resp.status == 400
        assert (await resp.json())["node_errors"]["1"]["errors"][0]["details"] == "audio - Invalid audio file: nope.wav"


async def test_09_queue_ops(fake: FakeComfyUI, session: aiohttp.ClientSession) -> None:
    def body(color: int, prefix: str) -> dict[str, Any]:
        return image_prompt(color, prefix, "q")

    a = await connect(session, fake, "q")
    fake.pause()
    first = await submit(session, fake, body(1, "q0"))
    q1 = await submit(session, fake, body(2, "q1"))
    q2 = await submit(session, fake, {**body(3, "q2"), "front": True})
    q3 = await submit(session, fake, {**body(4, "q3"), "number": 1.5})
    assert (first["number"], q1["number"], q2["number"], q3["number"]) == (0, 1, -2, 1.5)
    queue = await get_json(session, fake.url + "/queue")
    heap: list[float] = []
    for number in (0, 1, -2, 1.5):
        heapq.heappush(heap, number)
    assert [item[0] for item in queue["queue_pending"]] == heap  # the raw heap, not execution order
    assert await get_json(session, fake.url + "/prompt") == {"exec_info": {"queue_remaining": 4}}
    statuses = len(a.items)
    async with session.post(fake.url + "/queue", json={"delete": [q1["prompt_id"], "unknown"]}) as resp:
        assert resp.status == 200
    await fake.wait_for(lambda: len(a.items) == statuses + 1)
    assert a.items[-1]["data"]["status"]["exec_info"]["queue_remaining"] == 3
    fake.resume()
    await fake.wait_for(lambda: len(fake.history) == 3)
    started = [i["data"]["prompt_id"] for i in a.items if i["type"] == "execution_start"]
    assert started == [q2["prompt_id"], first["prompt_id"], q3["prompt_id"]]
    assert await get_json(session, f"{fake.url}/history/{q1['prompt_id']}") == {}


async def test_drop_websockets_keeps_running(session: aiohttp.ClientSession) -> None:
    async with FakeComfyUI(node_delay=0.02) as fake:
        a = await connect(session, fake, "dropper")
        body = image_prompt(9, "d", "dropper")
        pid = (await submit(session, fake, body))["prompt_id"]
        await fake.wait_for(lambda: a.has("executing", node="1"))
        await fake.drop_websockets()
        await fake.wait_for(lambda: a.closed and fake.ws_client_ids() == [])
        assert a.ws.close_code == 1006
        await fake.wait_for(lambda: pid in fake.history)  # execution went on without the socket
        assert fake.history[pid]["status"]["status_str"] == "success"


async def test_origin_check_and_feature_flags_only_first(fake: FakeComfyUI, session: aiohttp.ClientSession) -> None:
    host = fake.url.removeprefix("http://")
    async with session.get(fake.url + "/queue", headers={"Origin": "http://evil.example"}) as resp:
        assert resp.status == 403
    async with session.get(fake.url + "/queue", headers={"Origin": f"http://{host}"}) as resp:
        assert resp.status == 200
    ws = await session.ws_connect(fake.url + "/ws?clientId=late")
    client = Client(ws)
    await ws.send_str("not json")  # ignored, and does not count as the first message
    await ws.send_str(json.dumps({"type": "hello", "data": {}}))
    await ws.send_str(json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}}))
    await asyncio.sleep(0.05)
    assert kinds(client.items) == ["status"]  # flags only count as the first valid message
    await client.close()


async def test_video_outputs(fake: FakeComfyUI, session: aiohttp.ClientSession) -> None:
    body = {"prompt": {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 16, "height": 16, "batch_size": 4, "color": 3}},
        "2": {"class_type": "SaveAnimatedWEBP", "inputs": {"images": ["1", 0], "filename_prefix": "anim", "fps": 6,
              "lossless": True, "quality": 80, "method": "default"}},
        "3": {"class_type": "SaveWEBM", "inputs": {"images": ["1", 0], "filename_prefix": "clip", "codec": "vp9",
              "fps": 24, "crf": 32}},
    }}  # fmt: skip
    pid = (await submit(session, fake, body))["prompt_id"]
    await fake.wait_for(lambda: pid in fake.history)
    outputs = fake.history[pid]["outputs"]
    assert outputs["2"] == {"images": [{"filename": "anim_00001_.webp", "subfolder": "", "type": "output"}],
                            "animated": [True]}  # fmt: skip
    assert outputs["3"]["images"][0]["filename"] == "clip_00001_.webm"
    assert fake.files[("output", "", "anim_00001_.webp")][:4] == b"RIFF"
    async with session.get(fake.url + "/view?filename=clip_00001_.webm") as resp:
        assert resp.headers["Content-Type"] == "video/webm"


async def test_13_client_prompt_id(fake: FakeComfyUI, session: aiohttp.ClientSession) -> None:
    evs = events("13")
    a = await connect(session, fake, "pidclient00000000000000000000000")
    results = []
    for recorded in posts(evs):
        result = await submit(session, fake, recorded["request"]["body_json"])
        assert result["prompt_id"] == recorded["response"]["body_json"]["prompt_id"]  # "discord-job-0001", "12345"
        results.append(result)
        await fake.wait_for(lambda: finished(a) == len(results))
    assert dumps(a.items, []) == dumps(recorded_ws(evs, "A"), [])
    assert list(fake.history) == ["discord-job-0001", "12345"]  # the reused id was overwritten in place
    entry = fake.history["discord-job-0001"]
    assert entry["prompt"][0] == results[2]["number"]
    assert entry["outputs"]["2"]["images"][0]["filename"] == "pid13dup_00001_.png"


# --------------------------------------------------------------------------- the current profile (ComfyUI 0.38.1)

# The body newer ComfyUI answers to a prompt_id that is not a canonical lowercase hyphenated UUID string, as
# server.py writes it (quoted in the project's notes on current ComfyUI, section 4).
INVALID_PROMPT_ID_BODY = (
    '{"error": {"type": "invalid_prompt_id", "message": "prompt_id must be a valid UUID", "details": "prompt_id '
    'must be a UUID string in canonical lowercase hyphenated form; omit it to let the server generate one", '
    '"extra_info": {}}, "node_errors": {}}'
)


@pytest.fixture
async def current() -> AsyncIterator[FakeComfyUI]:
    async with FakeComfyUI(profile="current") as f:
        yield f


async def post_json(session: aiohttp.ClientSession, url: str, body: Any = None, **kwargs: Any) -> tuple[int, Any]:
    async with session.post(url, json=body, **kwargs) as resp:
        return resp.status, (await resp.json() if resp.content_type == "application/json" else await resp.read())


async def get_status_json(session: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with session.get(url) as resp:
        return resp.status, (await resp.json() if resp.content_type == "application/json" else await resp.read())


async def test_current_refuses_a_32_hex_prompt_id_like_the_real_server(
    current: FakeComfyUI, session: aiohttp.ClientSession
) -> None:
    hex_id = "0123456789abcdef0123456789abcdef"  # what the bot sent before its ids were UUID strings
    async with session.post(current.url + "/prompt", json={**image_prompt(1, "x"), "prompt_id": hex_id}) as resp:
        assert resp.status == 400
        assert resp.headers["Content-Type"] == "application/json; charset=utf-8"
        assert await resp.text() == INVALID_PROMPT_ID_BODY
    assert current.queue_snapshot() == ([], []) and current.history == {}
    accepted = await submit(session, current, image_prompt(1, "x"))
    assert accepted["number"] == 1  # the refused prompt still used up number 0


@pytest.mark.parametrize(
    "prompt_id",
    [
        "0123456789ABCDEF0123456789ABCDEF",
        "01234567-89AB-CDEF-0123-456789ABCDEF",
        "{01234567-89ab-cdef-0123-456789abcdef}",
        "urn:uuid:01234567-89ab-cdef-0123-456789abcdef",
        "discord-job-0001",
        "",
        12345,
        ["01234567-89ab-cdef-0123-456789abcdef"],
    ],
)
async def test_current_refuses_every_non_canonical_prompt_id(
    current: FakeComfyUI, session: aiohttp.ClientSession, prompt_id: Any
) -> None:
    async with session.post(current.url + "/prompt", json={**image_prompt(1, "x"), "prompt_id": prompt_id}) as resp:
        assert (resp.status, await resp.text()) == (400, INVALID_PROMPT_ID_BODY)


async def test_current_accepts_canonical_and_minted_ids_and_0364_accepts_any(
    current: FakeComfyUI, session: aiohttp.ClientSession
) -> None:
    canonical = "01234567-89ab-cdef-0123-456789abcdef"
    assert (await submit(session, current, {**image_prompt(1, "x"), "prompt_id": canonical}))["prompt_id"] == canonical
    for body in (image_prompt(2, "x"), {**image_prompt(3, "x"), "prompt_id": None}):
        minted = (await submit(session, current, body))["prompt_id"]
        assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", minted)
    async with FakeComfyUI() as old:
        hex_id = "0123456789abcdef0123456789abcdef"
        assert (await submit(session, old, {**image_prompt(1, "x"), "prompt_id": hex_id}))["prompt_id"] == hex_id


async def test_current_rejects_unknown_classes_as_missing_node_type(
    current: FakeComfyUI, session: aiohttp.ClientSession
) -> None:
    body = image_prompt(1, "x")
    body["prompt"]["1"] = {"class_type": "TotallyNotANode", "inputs": {}, "_meta": {"title": "My Loader"}}
    assert await post_json(session, current.url + "/prompt", body) == (400, {
        "error": {"type": "missing_node_type", "message": "Node 'My Loader' not found. The custom node may not be "
                  "installed.", "details": "Node ID '#1'",
                  "extra_info": {"node_id": "1", "class_type": "TotallyNotANode", "node_title": "My Loader"}},
        "node_errors": {},
    })  # fmt: skip
    del body["prompt"]["1"]["_meta"]
    status, answer = await post_json(session, current.url + "/prompt", body)
    assert (status, answer["error"]["message"]) == (400, "Node 'TotallyNotANode' not found. The custom node may "
                                                         "not be installed.")  # fmt: skip
    body["prompt"]["1"] = {"inputs": {}}
    status, answer = await post_json(session, current.url + "/prompt", body)
    assert (status, answer["error"]) == (400, {
        "type": "missing_node_type",
        "message": "Node 'ID #1' has no class_type. The workflow may be corrupted or a custom node is missing.",
        "details": "Node ID '#1'", "extra_info": {"node_id": "1", "class_type": None, "node_title": None},
    })  # fmt: skip
    async with FakeComfyUI() as old:
        body["prompt"]["1"] = {"class_type": "TotallyNotANode", "inputs": {}}
        status, answer = await post_json(session, old.url + "/prompt", body)
        assert (status, answer["error"]["type"]) == (400, "invalid_prompt")


async def test_current_system_stats_features_and_ws_flags(current: FakeComfyUI, session: aiohttp.ClientSession) -> None:
    stats = await get_json(session, current.url + "/system_stats")
    system = stats["system"]
    assert (system["comfyui_version"], system["os"]) == ("0.38.1", "linux")
    assert list(system) == [
        "os", "ram_total", "ram_free", "comfyui_version", "required_frontend_version", "installed_templates_version",
        "required_templates_version", "comfy_package_versions", "python_version", "pytorch_version",
        "embedded_python", "deploy_environment", "argv",
    ]  # fmt: skip
    assert isinstance(stats["devices"], list) and stats["devices"][0]["type"] == "cpu"
    features = await get_json(session, current.url + "/features")
    assert features == {
        "supports_preview_metadata": True, "max_upload_size": 104_857_600, "supports_model_type_tags": True,
        "extension": {"manager": {"supports_v4": True}}, "node_replacements": True, "assets": True,
    }  # fmt: skip
    client = await connect(session, current, "flags", flags=True)
    await current.wait_for(lambda: len(client.items) == 2)
    assert client.items[1] == {"type": "feature_flags", "data": features}
    async with FakeComfyUI() as old:
        old_system = (await get_json(session, old.url + "/system_stats"))["system"]
        assert (old_system["comfyui_version"], old_system["os"]) == ("0.3.64", "posix")
        assert "comfy_package_versions" not in old_system
        assert await get_json(session, old.url + "/features") == {"supports_preview_metadata": True,
                                                                  "max_upload_size": 104_857_600}  # fmt: skip
        for path in ("/api/jobs", "/api/jobs/x"):
            assert (await get_status_json(session, old.url + path))[0] == 404


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("status=pending,done,Nope", "Invalid status value(s): done, nope. Valid values: pending, in_progress, "
         "completed, failed, cancelled"),
        ("sort_by=name", "sort_by must be 'created_at' or 'execution_duration'"),
        ("sort_order=up", "sort_order must be 'asc' or 'desc'"),
        ("limit=0", "limit must be a positive integer"),
        ("limit=-3", "limit must be a positive integer"),
        ("limit=ten", "limit must be an integer"),
        ("offset=1.5", "offset must be an integer"),
    ],
)  # fmt: skip
async def test_current_jobs_list_refuses_bad_queries(
    current: FakeComfyUI, session: aiohttp.ClientSession, query: str, message: str
) -> None:
    assert await get_status_json(session, f"{current.url}/api/jobs?{query}") == (400, {"error": message})


async def test_current_jobs_list_pages_sorts_filters_and_maps_statuses(
    current: FakeComfyUI, session: aiohttp.ClientSession
) -> None:
    def tagged(color: int, workflow: str) -> dict[str, Any]:
        return {**image_prompt(color, "j"), "extra_data": {"extra_pnginfo": {"workflow": {"id": workflow}}}}

    current.fail_nodes["ImageInvert"] = ("RuntimeError", "boom")
    done = await submit(session, current, tagged(1, "wf-a"))
    await current.wait_for(lambda: done["prompt_id"] in current.history)
    broken = image_prompt(2, "j")
    broken["prompt"]["3"] = {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}}
    broken["prompt"]["2"]["inputs"]["images"] = ["3", 0]
    await asyncio.sleep(0.002)  # distinct create_time values
    failed = await submit(session, current, broken)
    await current.wait_for(lambda: failed["prompt_id"] in current.history)
    current.pause()
    await asyncio.sleep(0.002)
    waiting = await submit(session, current, tagged(3, "wf-b"))

    listing = await get_json(session, current.url + "/api/jobs")
    ids = [waiting["prompt_id"], failed["prompt_id"], done["prompt_id"]]
    assert [(job["id"], job["status"]) for job in listing["jobs"]] == list(
        zip(ids, ["pending", "failed", "completed"], strict=True)
    )
    assert listing["pagination"] == {"offset": 0, "limit": None, "total": 3, "has_more": False}
    pending, failed_job, completed = listing["jobs"]
    assert pending == {"id": ids[0], "status": "pending", "priority": 2,
                       "create_time": current.queue_snapshot()[1][0][3]["create_time"], "outputs_count": 0,
                       "previewable_outputs_count": 0, "workflow_id": "wf-b"}  # fmt: skip
    messages = dict(current.history[done["prompt_id"]]["status"]["messages"])
    image = current.history[done["prompt_id"]]["outputs"]["2"]["images"][0]
    assert completed == {
        "id": ids[2], "status": "completed", "priority": 0,
        "create_time": current.history[ids[2]]["prompt"][3]["create_time"],
        "execution_start_time": messages["execution_start"]["timestamp"],
        "execution_end_time": messages["execution_success"]["timestamp"],
        "outputs_count": 1, "previewable_outputs_count": 1,
        "preview_output": {**image, "nodeId": "2", "mediaType": "images"}, "workflow_id": "wf-a",
    }  # fmt: skip
    failed_messages = dict(current.history[ids[1]]["status"]["messages"])
    assert failed_job["execution_error"] == failed_messages["execution_error"]
    assert "workflow_id" not in failed_job and "preview_output" not in failed_job

    page = await get_json(session, current.url + "/api/jobs?limit=1&offset=1&sort_order=ASC")
    assert [job["id"] for job in page["jobs"]] == [ids[1]]
    assert page["pagination"] == {"offset": 1, "limit": 1, "total": 3, "has_more": True}
    clamped = await get_json(session, current.url + "/api/jobs?offset=-5&limit=2")
    assert clamped["pagination"] == {"offset": 0, "limit": 2, "total": 3, "has_more": True}
    some = await get_json(session, current.url + "/api/jobs?status=completed, PENDING")
    assert [job["id"] for job in some["jobs"]] == [ids[0], ids[2]]
    assert [job["id"] for job in (await get_json(session, current.url + "/api/jobs?workflow_id=wf-a"))["jobs"]] == [
        ids[2]
    ]
    by_duration = await get_json(session, current.url + "/api/jobs?sort_by=execution_duration&status=completed,failed")
    assert {job["id"] for job in by_duration["jobs"]} == {ids[1], ids[2]}
    assert (await get_json(session, current.url + "/api/api/jobs?limit=1"))["pagination"]["total"] == 3
    assert (await get_status_json(session, current.url + "/jobs"))[0] == 404
    current.resume()


async def test_current_one_job_in_each_state(current: FakeComfyUI, session: aiohttp.ClientSession) -> None:
    assert await get_status_json(session, current.url + "/api/jobs/not-a-uuid") == (404, {"error": "Job not found"})
    current.pause()
    body = image_prompt(5, "one")
    pid = (await submit(session, current, body))["prompt_id"]
    job = await get_json(session, f"{current.url}/api/jobs/{pid}")
    assert (job["status"], job["workflow"]["prompt"]) == ("pending", body["prompt"])
    assert list(job["workflow"]["extra_data"]) == ["create_time"]
    current.resume()
    await current.wait_for(lambda: pid in current.history)
    job = await get_json(session, f"{current.url}/api/jobs/{pid}")
    entry = current.history[pid]
    assert job["status"] == "completed"
    assert (job["outputs"], job["execution_status"]) == (entry["outputs"], entry["status"])
    assert job["workflow"] == {"prompt": entry["prompt"][2], "extra_data": entry["prompt"][3]}
    assert list(job)[-3:] == ["outputs", "execution_status", "workflow"]


async def test_current_cancel_one_job_by_state(current: FakeComfyUI, session: aiohttp.ClientSession) -> None:
    current.node_delay = 0.05
    watcher = await connect(session, current, "watch")
    running = (await submit(session, current, image_prompt(1, "c", "watch")))["prompt_id"]
    await current.wait_for(lambda: watcher.has("executing", node="1", prompt_id=running))
    current.pause()
    pending = (await submit(session, current, image_prompt(2, "c", "watch")))["prompt_id"]
    statuses = kinds(watcher.items).count("status")
    assert await post_json(session, f"{current.url}/api/jobs/{pending}/cancel") == (200, {"cancelled": True})
    await current.wait_for(lambda: kinds(watcher.items).count("status") == statuses + 1)  # dequeued: a status only
    assert await get_status_json(session, f"{current.url}/api/jobs/{pending}") == (404, {"error": "Job not found"})
    assert await post_json(session, f"{current.url}/api/jobs/{running}/cancel") == (200, {"cancelled": True})
    current.resume()
    await current.wait_for(lambda: watcher.done(running))
    assert watcher.has("execution_interrupted", prompt_id=running)
    assert current.history[running]["status"]["status_str"] == "error"
    assert (await get_json(session, f"{current.url}/api/jobs/{running}"))["status"] == "cancelled"
    assert pending not in current.history
    for finished_or_unknown in (running, "no-such-job"):
        assert await post_json(session, f"{current.url}/api/jobs/{finished_or_unknown}/cancel") == (
            200, {"cancelled": False})  # fmt: skip


async def test_current_cancel_many_jobs(current: FakeComfyUI, session: aiohttp.ClientSession) -> None:
    url = current.url + "/api/jobs/cancel"
    async with session.post(url, data=b"{not json", headers={"Content-Type": "application/json"}) as resp:
        assert (resp.status, await resp.json()) == (400, {"error": "Request body must be valid JSON"})
    assert await post_json(session, url, {"job_ids": "abc"}) == (400, {"error": "job_ids must be a list"})
    assert await post_json(session, url, ["abc"]) == (400, {"error": "job_ids must be a list"})
    assert await post_json(session, url, {"job_ids": ["ok", 7, None]}) == (
        400, {"error": "job_ids contains invalid id(s)", "invalid_ids": ["7", "None"]})  # fmt: skip
    current.pause()
    first = (await submit(session, current, image_prompt(1, "m")))["prompt_id"]
    second = (await submit(session, current, image_prompt(2, "m")))["prompt_id"]
    assert await post_json(session, url, {"job_ids": ["unknown", first]}) == (200, {"cancelled": True})
    assert await post_json(session, url, {"job_ids": ["unknown"]}) == (200, {"cancelled": False})
    assert [item[1] for item in current.queue_snapshot()[1]] == [second]
    current.resume()


async def test_current_hides_api_keys_from_the_queue_and_stamps_create_time(session: aiohttp.ClientSession) -> None:
    body = {**image_prompt(1, "k"), "extra_data": {"api_key_comfy_org": "secret-key", "note": "kept"}}
    for profile, shown in (("0.3.64", {"api_key_comfy_org": "secret-key", "note": "kept"}), ("current", None)):
        async with FakeComfyUI(profile=profile) as fake:
            fake.pause()
            pid = (await submit(session, fake, body))["prompt_id"]
            extra = (await get_json(session, fake.url + "/queue"))["queue_pending"][0][3]
            if shown is not None:
                assert extra == shown
            else:
                assert list(extra) == ["note", "create_time"] and isinstance(extra["create_time"], int)
                assert extra["create_time"] > 1_600_000_000_000  # milliseconds
            fake.resume()
            await fake.wait_for(lambda pid=pid, fake=fake: pid in fake.history)
            assert "api_key_comfy_org" not in fake.history[pid]["prompt"][3]


async def test_current_output_shapes(current: FakeComfyUI, session: aiohttp.ClientSession) -> None:
    current.files[("output", "audio", "t_00004_.flac")] = b"fLaC"  # written by an older server
    body = {"prompt": {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 16, "height": 12, "batch_size": 1, "color": 3}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "meta"}},
        "3": {"class_type": "LoadAudio", "inputs": {"audio": "tone.wav"}},
        "4": {"class_type": "SaveAudioMP3", "inputs": {"audio": ["3", 0], "filename_prefix": "audio/t",
              "quality": "V0"}},
    }}  # fmt: skip
    current.files[("input", "", "tone.wav")] = b"RIFF....WAVEfmt "
    pid = (await submit(session, current, body))["prompt_id"]
    await current.wait_for(lambda: pid in current.history)
    outputs = current.history[pid]["outputs"]
    assert outputs["2"]["images"] == [{"filename": "meta_00001_.png", "subfolder": "", "type": "output",
                                       "metadata": {"kind": "image", "width": 16, "height": 12}}]  # fmt: skip
    assert outputs["4"]["audio"] == [{"filename": "t_00005.mp3", "subfolder": "audio", "type": "output"}]
    body["prompt"]["4"]["inputs"]["quality"] = "320k"  # not cached: the saver runs again
    again = (await submit(session, current, body))["prompt_id"]
    await current.wait_for(lambda: again in current.history)
    assert current.history[again]["outputs"]["4"]["audio"][0]["filename"] == "t_00006.mp3"  # both forms count


@pytest.mark.parametrize("profile", ["0.3.64", "current"])
async def test_cross_site_requests_are_refused_only_by_current(session: aiohttp.ClientSession, profile: str) -> None:
    async with FakeComfyUI(profile=profile) as fake:
        for path in ("/queue", "/nope", "/prompt"):
            async with session.get(fake.url + path, headers={"Sec-Fetch-Site": "cross-site"}) as resp:
                if profile == "current":
                    assert (resp.status, await resp.read()) == (403, b"")
                else:
                    assert resp.status != 403
        async with session.get(fake.url + "/queue", headers={"Sec-Fetch-Site": "same-origin"}) as resp:
            assert resp.status == 200


@pytest.mark.parametrize("profile", ["0.3.64", "current"])
async def test_same_client_id_reconnect_orphans_the_new_socket(session: aiohttp.ClientSession, profile: str) -> None:
    async with FakeComfyUI(profile=profile) as fake:
        old = await connect(session, fake, "same")
        new = await connect(session, fake, "same")
        await old.close()  # the old handler's cleanup unregisters the new socket (ComfyUI issue #16010)
        await fake.wait_for(lambda: "same" not in fake.ws_client_ids())
        before = len(new.items)
        pid = (await submit(session, fake, image_prompt(1, "o", "same")))["prompt_id"]
        await fake.wait_for(lambda: pid in fake.history)
        await asyncio.sleep(0.02)
        assert len(new.items) == before and not new.closed
