"""The API through HTTP (FastAPI's TestClient): every route, errors, limits, reload."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from index.build import remove_items
from models.media import MediaErrorReason
from service.app import create_app
from service.engine import Engine, EngineError
from tests.models.conftest import MediaFactory
from tests.models.test_media_hostile import CASES, DEFAULT
from tests.service.conftest import settings_for


def error_of(response) -> dict:
    body = response.json()
    assert set(body) == {"error"}, body
    assert isinstance(body["error"]["code"], str) and isinstance(body["error"]["message"], str)
    return body["error"]


def clip(served: dict[str, Path], n: int = 0) -> tuple[str, Path]:
    rows = [json.loads(line) for line in (served["corpus"] / "manifest.jsonl").open()]
    return rows[n]["id"], served["corpus"] / rows[n]["video"]


def test_health_ready_index_and_metrics(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    info = client.get("/v1/index").json()
    assert ready["index_version"] == info["version"]
    assert info["items"] == 12 and info["sequence_codec"] == "f16"
    client.post("/v1/search/text", json={"query": "a red ball"})
    text = client.get("/metrics").text
    assert 'trimodal_request_duration_ms_count{method="POST",route="/v1/search/text"' in text
    assert "trimodal_stage_duration_ms_bucket" in text and "trimodal_index_items 12.0" in text


def test_text_search_returns_hits_with_segments_and_timings(client: TestClient) -> None:
    r = client.post("/v1/search/text", json={"query": "a small red ball bounces", "k": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["hits"]) == 5 and body["index_version"]
    assert r.headers["x-request-id"]
    assert body["localised"] is True
    for h in body["hits"]:
        assert 0 <= h["start_s"] < h["end_s"] <= h["duration_s"] + 1e-6
        assert len(h["timeline"]) >= 1 and h["steps_per_second"] == 4.0
        assert h["media_url"] == f"/v1/items/{h['id']}/media"
    scores = [h["score"] for h in body["hits"]]
    assert scores == sorted(scores, reverse=True)
    assert {"encode", "search", "total"} <= set(body["timings_ms"])


def test_pagination_is_consistent(client: TestClient) -> None:
    q = {"query": "a bell rings at night", "rerank": False}
    all_ten = client.post("/v1/search/text", json={**q, "k": 10}).json()["hits"]
    second = client.post("/v1/search/text", json={**q, "k": 5, "offset": 5}).json()["hits"]
    assert [h["id"] for h in second] == [h["id"] for h in all_ten[5:]]


def test_filters(client: TestClient, served) -> None:
    tagged = client.post(
        "/v1/search/text", json={"query": "a dog", "k": 12, "filters": {"tags": ["even"]}}
    ).json()["hits"]
    assert len(tagged) == 6
    ids = {
        json.loads(line)["id"]
        for i, line in enumerate((served["corpus"] / "manifest.jsonl").open())
        if i % 2 == 0
    }
    assert {h["id"] for h in tagged} == ids
    none = client.post(
        "/v1/search/text", json={"query": "a dog", "filters": {"min_duration_s": 100}}
    ).json()["hits"]
    assert none == []
    r = client.post(
        "/v1/search/text",
        json={"query": "x", "filters": {"min_duration_s": 5, "max_duration_s": 1}},
    )
    assert r.status_code == 422 and error_of(r)["code"] == "invalid_request"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"query": ""}, "invalid_request"),
        ({"query": "   "}, "invalid_query"),
        ({"query": "a", "k": 0}, "invalid_request"),
        ({"query": "a", "k": 101}, "invalid_request"),  # over the server's max_k
        ({"query": "a", "target": "image"}, "invalid_request"),
        ({"query": "a", "surprise": 1}, "invalid_request"),
        ({"query": "a", "weights": {"visual": 0, "audio": 0}}, "invalid_request"),
    ],
)
def test_bad_text_requests_get_the_error_shape(client: TestClient, body, code) -> None:
    r = client.post("/v1/search/text", json=body)
    assert r.status_code == 422
    assert error_of(r)["code"] == code


def test_audio_and_video_uploads_find_their_own_clip(client: TestClient, served) -> None:
    item_id, path = clip(served, 3)
    opts = {"target": "audio", "weights": {"audio": 1.0}, "k": 3}
    r = client.post(
        "/v1/search/audio",
        files={"file": ("whatever.bin", path.read_bytes(), "application/octet-stream")},
        data={"options": json.dumps(opts)},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["hits"][0]["id"] == item_id and body["query_duration_s"] > 0
    assert {"decode", "encode", "search", "rerank"} <= set(body["timings_ms"])
    r = client.post(
        "/v1/search/video",
        files={"file": ("clip.txt", path.read_bytes(), "text/plain")},  # name and type ignored
        data={"options": json.dumps({"target": "video", "weights": {"visual": 1.0}})},
    )
    assert r.status_code == 200, r.text
    assert r.json()["hits"][0]["id"] == item_id


def test_rerank_follows_the_index_policy_unless_a_request_forces_it(
    client: TestClient, served
) -> None:
    # The served checkpoint's record (conftest): re-rank on except for audio→video.
    policy = client.get("/v1/index").json()["search_policy"]
    assert policy["recorded"] is True and policy["rerank"]["audio→video"] is False
    assert policy["rerank"]["audio→audio"] is True
    _, path = clip(served, 2)

    def search(**opts: object) -> dict:
        r = client.post(
            "/v1/search/audio",
            files={"file": ("q.mp4", path.read_bytes(), "video/mp4")},
            data={"options": json.dumps({"k": 5, **opts})},
        )
        assert r.status_code == 200, r.text
        return r.json()

    plain = search()  # target video
    assert plain["reranked"] is False
    assert [h["score"] for h in plain["hits"]] == [h["pooled_score"] for h in plain["hits"]]
    assert search(target="audio")["reranked"] is True
    assert search(rerank=True)["reranked"] is True
    assert search(target="audio", rerank=False)["reranked"] is False


def test_more_like_this(client: TestClient, served) -> None:
    item_id, _ = clip(served, 5)
    r = client.post(f"/v1/search/item/{item_id}", json={"using": "visual", "k": 3})
    assert r.status_code == 200 and r.json()["hits"][0]["id"] == item_id
    r = client.post("/v1/search/item/nope", json={})
    assert r.status_code == 404 and error_of(r)["code"] == "not_found"


def test_items_media_ranges_and_thumbnail(client: TestClient, served) -> None:
    item_id, path = clip(served, 1)
    item = client.get(f"/v1/items/{item_id}").json()
    assert item["id"] == item_id and item["has_video"] and item["meta"]["tags"]
    r = client.get(item["media_url"], headers={"Range": "bytes=10-109"})
    assert r.status_code == 206 and r.content == path.read_bytes()[10:110]
    assert r.headers["accept-ranges"] == "bytes"
    thumb = client.get(item["thumbnail_url"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert thumb.content[:2] == b"\xff\xd8"
    # Made once: asked again, it comes from memory, without a slot or a thread.
    state = client.app.state.trimodal  # type: ignore[attr-defined]

    async def no_slot(*_: object) -> bytes:
        raise AssertionError("a made thumbnail was made again")

    made, state.run_aside = state.run_aside, no_slot
    try:
        again = client.get(item["thumbnail_url"])
    finally:
        state.run_aside = made
    assert again.status_code == 200 and again.content == thumb.content


@pytest.mark.parametrize(
    "url",
    [
        "/v1/items/..%2F..%2Fetc%2Fpasswd/media",
        "/v1/items/%2Fetc%2Fpasswd/media",
        "/v1/items/../../etc/passwd",
        "/v1/items/..",
        "/v1/items/%00/thumbnail",
    ],
)
def test_paths_in_ids_never_reach_the_filesystem(client: TestClient, url: str) -> None:
    r = client.get(url)
    assert r.status_code == 404
    error_of(r)


def test_admin_reload_needs_the_key(client: TestClient) -> None:
    r = client.post("/v1/admin/reload")
    assert r.status_code == 401 and error_of(r)["code"] == "unauthorized"
    r = client.post("/v1/admin/reload", headers={"X-API-Key": "s3cret-kez"})
    assert r.status_code == 403 and error_of(r)["code"] == "forbidden"
    r = client.post("/v1/admin/reload", headers={"X-API-Key": "s3cret-key"})
    assert r.status_code == 200 and r.json()["swapped"] is False


def test_oversized_upload_is_refused_before_the_body_is_read(served, engine) -> None:
    app = create_app(settings_for(served, max_upload_mb=0.01), engine=engine)
    with TestClient(app) as c:
        big = b"\0" * 200_000
        r = c.post("/v1/search/audio", files={"file": ("a.wav", big, "audio/wav")})
        assert r.status_code == 413 and error_of(r)["code"] == "too_large"

        def chunks():  # no Content-Length: counted while it streams, cut off at the limit
            yield (
                b'--zz\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n'
                b"Content-Type: application/octet-stream\r\n\r\n"
            )
            for _ in range(100):
                yield b"x" * 4096

        r = c.post(
            "/v1/search/audio",
            content=chunks(),
            headers={"content-type": "multipart/form-data; boundary=zz"},
        )
        assert r.status_code == 413 and error_of(r)["code"] == "too_large"
        assert c.get("/healthz").status_code == 200
    # (TestClient buffers a streamed body before the app sees it: that the server stops reading
    # early is shown against a real server in test_server.py.)


def _hostile_cases():
    for case_id, build, reason in CASES:
        if reason in (MediaErrorReason.NOT_FOUND, MediaErrorReason.NOT_A_FILE):
            continue  # an upload is always a regular file
        yield pytest.param(build, reason, id=case_id)


@pytest.mark.parametrize(("build", "reason"), list(_hostile_cases()))
def test_hostile_uploads_get_a_4xx_and_the_server_still_serves(
    client: TestClient, engine, tmp_path: Path, build, reason, monkeypatch
) -> None:
    path, limits = build(MediaFactory(tmp_path))
    if limits != DEFAULT:  # a case made for tighter limits (1 s, 64x47 pixels...): serve with them
        monkeypatch.setattr(engine.encoder, "limits", limits)
    data = Path(path).read_bytes()
    codes = []
    for route in ("audio", "video"):
        r = client.post(f"/v1/search/{route}", files={"file": ("upload", data, "video/mp4")})
        assert 400 <= r.status_code < 500, (route, r.status_code, r.text)
        codes.append(error_of(r)["code"])
    assert reason.value in codes, codes
    assert client.post("/v1/search/text", json={"query": "still there?"}).status_code == 200


def test_busy_server_answers_503_with_retry_after(served, engine, monkeypatch) -> None:
    original = engine.encoder.text

    def slow(sentence: str):
        time.sleep(0.6)
        return original(sentence)

    monkeypatch.setattr(engine.encoder, "text", slow)
    app = create_app(settings_for(served, max_concurrency=1, queue_wait_s=0.05), engine=engine)
    with TestClient(app) as c:
        results: list[int] = []
        first = threading.Thread(
            target=lambda: results.append(
                c.post("/v1/search/text", json={"query": "a"}).status_code
            )
        )
        first.start()
        time.sleep(0.2)
        r = c.post("/v1/search/text", json={"query": "b"})
        first.join()
        assert results == [200]
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert error_of(r)["code"] == "busy"


def test_slow_request_times_out_with_504(served, engine, monkeypatch) -> None:
    original = engine.encoder.text
    monkeypatch.setattr(engine.encoder, "text", lambda s: (time.sleep(1.0), original(s))[1])
    app = create_app(settings_for(served, request_timeout_s=0.2), engine=engine)
    with TestClient(app) as c:
        r = c.post("/v1/search/text", json={"query": "a"})
        assert r.status_code == 504 and error_of(r)["code"] == "timeout"


def test_reload_under_concurrent_load_fails_no_request(served, tmp_path: Path) -> None:
    root = tmp_path / "index"
    shutil.copytree(served["index"], root)
    settings = settings_for(served, index=root)
    engine = Engine(settings)
    app = create_app(settings, engine=engine)
    item_id, _ = clip(served, 0)
    failures: list[str] = []
    versions: set[str] = set()
    stop = threading.Event()
    with TestClient(app) as c:
        before = c.get("/v1/index").json()["version"]

        def load() -> None:
            while not stop.is_set():
                r = c.post("/v1/search/text", json={"query": "a ball", "k": 12})
                if r.status_code != 200:
                    failures.append(r.text)
                else:
                    versions.add(r.json()["index_version"])

        threads = [threading.Thread(target=load) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(0.3)
        remove_items(root, {item_id})  # publishes a new version and moves CURRENT
        r = c.post("/v1/admin/reload", headers={"X-API-Key": "s3cret-key"})
        time.sleep(0.3)
        stop.set()
        for t in threads:
            t.join()
        assert r.status_code == 200 and r.json()["swapped"] is True
        after = c.get("/v1/index").json()
        assert after["version"] != before and after["items"] == 11
        assert not failures, failures[:2]
        assert versions == {before, after["version"]}
        hits = c.post("/v1/search/text", json={"query": "a ball", "k": 12}).json()["hits"]
        assert item_id not in {h["id"] for h in hits}


def test_watcher_picks_up_a_new_version_by_itself(served, tmp_path: Path) -> None:
    root = tmp_path / "index"
    shutil.copytree(served["index"], root)
    settings = settings_for(served, index=root, reload_poll_s=0.1)
    with TestClient(create_app(settings, engine=Engine(settings))) as c:
        before = c.get("/v1/index").json()["version"]
        item_id, _ = clip(served, 2)
        remove_items(root, {item_id})
        deadline = time.monotonic() + 10
        while c.get("/v1/index").json()["version"] == before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert c.get("/v1/index").json()["items"] == 11
        assert "trimodal_index_reloads_total" in c.get("/metrics").text


def test_openapi_is_complete(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    paths = set(spec["paths"])
    assert {
        "/v1/search/text",
        "/v1/search/audio",
        "/v1/search/video",
        "/v1/search/item/{item_id}",
        "/v1/items/{item_id}",
        "/v1/items/{item_id}/media",
        "/v1/items/{item_id}/thumbnail",
        "/v1/index",
        "/healthz",
        "/readyz",
        "/metrics",
        "/v1/admin/reload",
    } <= paths
    text_schema = spec["components"]["schemas"]["TextSearchRequest"]
    assert text_schema.get("examples")


def test_request_logs_are_json_with_the_request_id(client: TestClient, capsys) -> None:
    import logging

    from service import logs

    logs.configure("info")
    try:
        r = client.post(
            "/v1/search/text", json={"query": "a bell"}, headers={"x-request-id": "abc123"}
        )
        assert r.headers["x-request-id"] == "abc123"
        lines = [
            json.loads(line)
            for line in capsys.readouterr().err.splitlines()
            if line.startswith("{")
        ]
        mine = [e for e in lines if e.get("request_id") == "abc123"]
        assert mine and mine[0]["route"] == "/v1/search/text" and mine[0]["status"] == 200
        assert mine[0]["level"] == "info" and mine[0]["ms"] > 0
    finally:
        logging.getLogger("trimodal").handlers.clear()
        logging.getLogger("trimodal").propagate = True


def test_exported_encoders_next_to_the_checkpoint_are_used(served, tmp_path: Path) -> None:
    from models.onnx_export import export_onnx

    ckpt = tmp_path / "ckpt"
    shutil.copytree(served["ckpt"], ckpt)
    export_onnx(ckpt, ckpt / "onnx")
    settings = settings_for(served, ckpt=ckpt, text_runtime="onnx")
    engine = Engine(settings)
    assert engine.encoder.runtime == "onnx (exported encoders)"
    torch_engine = Engine(
        settings_for(served, ckpt=ckpt, encoder_runtime="torch", text_runtime="torch")
    )
    assert torch_engine.encoder.runtime == "torch"
    # The default text runtime (int8 tower) takes text over from the float export.
    default = Engine(settings_for(served, ckpt=ckpt))
    assert default.encoder.runtime == "onnx (exported encoders, onnx text tower)"
    assert default.encoder.text_backbone.path.name.endswith("-int8.onnx")
    item_id, path = clip(served, 3)
    with TestClient(create_app(settings, engine=engine)) as c:
        r = c.post(
            "/v1/search/audio",
            files={"file": ("q", path.read_bytes(), "application/octet-stream")},
            data={"options": json.dumps({"target": "audio", "weights": {"audio": 1.0}})},
        )
        assert r.status_code == 200 and r.json()["hits"][0]["id"] == item_id
    a = engine.encoder.text("a red ball").query.pooled
    b = torch_engine.encoder.text("a red ball").query.pooled
    assert float(abs(a - b).max()) < 1e-4
    (ckpt / "onnx" / "onnx.json").write_text('{"checkpoint_hash": "other"}')
    with pytest.raises(EngineError, match="another checkpoint"):
        Engine(settings_for(served, ckpt=ckpt, encoder_runtime="onnx"))
    assert Engine(settings).encoder.runtime != "onnx (exported encoders)"  # auto: falls back


def test_hits_carry_av_agreement_and_it_filters(client: TestClient) -> None:
    hits = client.post("/v1/search/text", json={"query": "a dog", "k": 12}).json()["hits"]
    assert len(hits) == 12
    scores = sorted(h["av_agreement"] for h in hits)
    assert all(isinstance(h["audio_offset_s"], float) for h in hits)
    middle = scores[len(scores) // 2]
    kept = client.post(
        "/v1/search/text",
        json={"query": "a dog", "k": 12, "filters": {"min_av_agreement": middle}},
    ).json()["hits"]
    assert 0 < len(kept) < 12 and all(h["av_agreement"] >= middle - 1e-4 for h in kept)


def test_a_checkpoint_that_reads_attributes_gets_a_text_tower_beside_the_export(
    served, tmp_path: Path
) -> None:
    """The export's text path gives the sentence vector only; a checkpoint with fitted attribute
    readers (`models.attributes`) needs the tower's token states, so the service keeps an ONNX
    tower for text even where the float export covers it, and its sentences lean."""
    from dataclasses import replace
    from types import SimpleNamespace

    from index.query import QueryEncoder
    from models.model import TrimodalModel

    settings = settings_for(served, text_runtime="onnx")
    plain = TrimodalModel.load(served["ckpt"])
    assert Engine._text_runtime(SimpleNamespace(settings=settings), plain, True) is None
    reading = TrimodalModel(replace(plain.cfg, attribute_readers=True))
    reading.load_state_dict(plain.state_dict(), strict=False)
    assert reading.attributes is not None
    reading.attributes.trained.fill_(1.0)
    tower = Engine._text_runtime(SimpleNamespace(settings=settings), reading, True)
    assert tower is not None and not tower.path.name.endswith("-int8.onnx")
    query = QueryEncoder(reading, text_backbone=tower).text("a red ball").query
    assert query.leans is not None


def test_a_text_search_says_how_its_sentence_was_read(tmp_path: Path) -> None:
    """Where the index's policy weighs what the sentence names, the response carries the reading
    of those attributes (`read_as`), and the page shows it; a search it does not weigh in says
    nothing (None), so an upload's response is unchanged (the page: `test_web_browser`)."""
    from types import SimpleNamespace

    import numpy as np

    from index.build import Entry, publish_entries
    from index.query import Encoded
    from index.search import Query, Searcher
    from index.version import ItemRecord
    from models.attributes import ATTRIBUTES, CLASSES, AttributeReading, PictureReader, columns
    from models.policy import SearchPolicy
    from service.routes.search import _search
    from service.schemas import SearchResponse, TextSearchRequest

    dim = 8
    e = np.eye(dim, dtype=np.float32)
    policy = SearchPolicy(
        True, {}, text_audio_share=0.0, text_attributes=("size",), text_attribute_weight=0.1
    )
    publish_entries(
        tmp_path,
        (
            Entry(
                ItemRecord(f"item{i}", f"/m/{i}.mp4", 6.0, True, True),
                {"visual": e[i], "audio": e[i]},
                {"visual": e[i][None], "audio": e[i][None]},
            )
            for i in range(2)
        ),
        model_hash="x",
        dim=dim,
        steps_per_second=4.0,
        build_info={"search_policy": policy.to_dict()},
    )
    searcher = Searcher.open(tmp_path)
    probabilities = np.full(len(CLASSES), 0.1, np.float32)
    probabilities[columns("size")[0]] = 0.875  # small
    reader = PictureReader(np.zeros((len(CLASSES), dim), np.float32), np.zeros(len(CLASSES)))
    leans = {name: np.zeros(dim, np.float32) for name in ATTRIBUTES}
    query = Query("text", e[0], leans=leans, reading=AttributeReading(probabilities, reader))
    metrics = SimpleNamespace(
        stages=SimpleNamespace(labels=lambda _: SimpleNamespace(observe=lambda _: None))
    )
    state = SimpleNamespace(metrics=metrics)

    def answer(q: Query, target: str) -> dict:
        body = TextSearchRequest(query="a small ball", target=target, k=2)
        response = _search(state, searcher, Encoded(q), body, 0.0)  # type: ignore[arg-type]
        return SearchResponse.model_validate(response.model_dump()).model_dump()

    found = answer(query, "video")
    assert found["read_as"] == {"size": [{"value": "small", "probability": 0.875}]}
    assert answer(query, "audio")["read_as"] is None  # the policy weighs nothing for sounds
    from dataclasses import replace

    assert answer(replace(query, reading=None), "video")["read_as"] is None
