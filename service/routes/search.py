"""Search routes: text, audio upload, video upload, "more like this"."""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Response, UploadFile
from pydantic import ValidationError

from index.query import Encoded
from index.search import FilterUnavailable, ItemFilter, Query, Searcher
from index.search import Hit as SearchHit
from models.media import MediaError, MediaErrorReason
from service.deps import State, StateDep
from service.errors import ApiError
from service.schemas import (
    ErrorResponse,
    Hit,
    ReadValue,
    SearchOptions,
    SearchResponse,
    TextSearchRequest,
    item_urls,
)

router = APIRouter(prefix="/v1/search", tags=["search"])

ERRORS: dict[int | str, dict] = {
    code: {"model": ErrorResponse} for code in (413, 415, 422, 503, 504)
}

# How a refused upload is answered: the reason is the error code, the status says whose fault.
_MEDIA_STATUS = {
    MediaErrorReason.TOO_LARGE: 413,
    MediaErrorReason.TOO_LONG: 413,
    MediaErrorReason.UNKNOWN_FORMAT: 415,
    MediaErrorReason.UNSUPPORTED_CONTAINER: 415,
    MediaErrorReason.UNSUPPORTED_CODEC: 415,
    MediaErrorReason.EXTERNAL_REFERENCE: 415,
    MediaErrorReason.TIMEOUT: 422,
}


def _media_error(e: MediaError) -> ApiError:
    status = _MEDIA_STATUS.get(e.reason, 422)
    return ApiError(status, e.reason.value, f"cannot use this file: {e.message}")


def _check_limits(state: State, opts: SearchOptions) -> None:
    s = state.settings
    if opts.k > s.max_k:
        raise ApiError(422, "invalid_request", f"k must be at most {s.max_k}")
    if opts.rerank_k > s.max_rerank_k:
        raise ApiError(422, "invalid_request", f"rerank_k must be at most {s.max_rerank_k}")


def _search(
    state: State, searcher: Searcher, encoded: Encoded, opts: SearchOptions, start: float
) -> SearchResponse:
    f = opts.filters
    where = ItemFilter(
        f.min_duration_s,
        f.max_duration_s,
        f.has_audio,
        f.has_video,
        tuple(f.tags),
        f.min_av_agreement,
    )
    try:
        result = searcher.search(
            encoded.query,
            opts.target,
            k=opts.offset + opts.k,
            rerank=opts.rerank,
            rerank_k=opts.rerank_k,
            distance=opts.distance,
            weights={str(m): w for m, w in opts.weights.items()} if opts.weights else None,
            where=where,
        )
    except KeyError as e:  # no default fusion for this direction
        raise ApiError(422, "invalid_request", f"unsupported direction: {e}") from None
    except FilterUnavailable as e:  # e.g. min_av_agreement on an index without agreement
        raise ApiError(422, "invalid_request", str(e)) from None
    timings = {**encoded.timings_ms, **{k: round(v, 3) for k, v in result.timings_ms.items()}}
    for stage, ms in timings.items():
        state.metrics.stages.labels(stage).observe(ms)
    timings["total"] = round((time.perf_counter() - start) * 1e3, 3)
    hits = [_hit(h, searcher) for h in result.hits[opts.offset :]]
    return SearchResponse(
        hits=hits,
        offset=opts.offset,
        k=opts.k,
        index_version=result.version,
        query_duration_s=encoded.duration_s,
        timings_ms=timings,
        reranked=result.reranked,
        localised=result.localised,
        read_as=_read_as(result.read_as),
    )


def _read_as(found: dict[str, list[tuple[str, float]]] | None) -> dict[str, list[ReadValue]] | None:
    if found is None:
        return None
    return {
        name: [ReadValue(value=v, probability=round(p, 3)) for v, p in values]
        for name, values in found.items()
    }


def _hit(h: SearchHit, searcher: Searcher) -> Hit:
    return Hit(
        id=h.id,
        score=round(h.score, 6),
        pooled_score=round(h.pooled_score, 6),
        start_s=round(h.start_s, 3),
        end_s=round(h.end_s, 3),
        timeline=h.timeline,
        steps_per_second=searcher.sps,
        title=h.title,
        duration_s=h.duration_s,
        has_audio=h.has_audio,
        has_video=h.has_video,
        av_agreement=h.av_agreement,
        audio_offset_s=h.audio_offset_s,
        landmark_votes=h.landmark_votes,
        print_ber=None if h.print_ber is None else round(h.print_ber, 4),
        **item_urls(h.id, h.has_video),
    )


@router.post("/text", response_model=SearchResponse, responses=ERRORS)
async def search_text(body: TextSearchRequest, state: StateDep) -> Response:
    """Find videos (or audio tracks) that match a sentence."""
    _check_limits(state, body)

    def work() -> SearchResponse:
        start = time.perf_counter()
        searcher = state.engine.searcher  # this request's version, whatever reloads meanwhile
        try:
            encoded = state.engine.encoder.text(body.query)
        except ValueError as e:
            raise ApiError(422, "invalid_query", str(e)) from None
        return _search(state, searcher, encoded, body, start)

    return _json(await state.run(work))


def _json(result: SearchResponse) -> Response:
    """Serialised once, by the model that built it (FastAPI would validate it all over again)."""
    return Response(result.model_dump_json(), media_type="application/json")


def _options(raw: str) -> SearchOptions:
    try:
        return SearchOptions.model_validate(json.loads(raw or "{}"))
    except (json.JSONDecodeError, ValidationError) as e:
        detail = e.errors() if isinstance(e, ValidationError) else str(e)
        raise ApiError(
            422, "invalid_request", "the options field is not valid JSON options", str(detail)
        ) from None


async def _save(upload: UploadFile, limit: int) -> Path:
    """Copy an upload to a private temp file (the body limit was enforced while it arrived)."""
    fd, name = tempfile.mkstemp(prefix="trimodal-upload-")
    size = 0
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := await upload.read(1 << 20):
                size += len(chunk)
                if size > limit:
                    raise ApiError(413, "too_large", f"the file is larger than {limit} bytes")
                out.write(chunk)
    except BaseException:
        os.unlink(name)
        raise
    if size == 0:
        os.unlink(name)
        raise ApiError(422, "empty", "the uploaded file is empty")
    return Path(name)


async def _media_search(
    state: State, kind: Literal["audio", "video"], upload: UploadFile, options: str
) -> Response:
    opts = _options(options)
    _check_limits(state, opts)
    path = await _save(upload, int(state.settings.max_upload_mb * 1024 * 1024))

    def work() -> SearchResponse:
        start = time.perf_counter()
        searcher = state.engine.searcher
        try:
            encoder = state.engine.encoder
            encoded = (
                # landmarks only where they are looked for: sound among sounds
                encoder.audio(path, landmarks=opts.target == "audio")
                if kind == "audio"
                else encoder.video(path)
            )
        except MediaError as e:
            raise _media_error(e) from None
        return _search(state, searcher, encoded, opts, start)

    try:
        return _json(await state.run(work))
    finally:
        path.unlink(missing_ok=True)


UploadField = Annotated[UploadFile, File(description="An audio or video file (any name).")]
OptionsField = Annotated[
    str,
    Form(
        description='Search options as JSON, e.g. {"target": "video", "k": 10}.',
        examples=['{"target": "video", "k": 10}'],
    ),
]


@router.post("/audio", response_model=SearchResponse, responses=ERRORS)
async def search_audio(
    state: StateDep, file: UploadField, options: OptionsField = "{}"
) -> Response:
    """Find videos (or audio tracks) that sound like the uploaded clip (its audio track)."""
    return await _media_search(state, "audio", file, options)


@router.post("/video", response_model=SearchResponse, responses=ERRORS)
async def search_video(
    state: StateDep, file: UploadField, options: OptionsField = "{}"
) -> Response:
    """Find audio tracks (target audio, default here) or videos that fit the uploaded footage."""
    opts = options if options.strip() not in ("", "{}") else '{"target": "audio"}'
    return await _media_search(state, "video", file, opts)


class ItemSearchRequest(SearchOptions):
    using: Literal["visual", "audio"] = "visual"


@router.post(
    "/item/{item_id}",
    response_model=SearchResponse,
    responses={404: {"model": ErrorResponse}, **ERRORS},
)
async def search_item(item_id: str, body: ItemSearchRequest, state: StateDep) -> Response:
    """ "More like this": an indexed item's own embedding (its pictures or its sound) as query."""
    _check_limits(state, body)

    def work() -> SearchResponse:
        start = time.perf_counter()
        searcher = state.engine.searcher
        try:
            query: Query = searcher.item_query(item_id, body.using)
        except KeyError:
            raise ApiError(404, "not_found", f"no item {item_id!r} in the index") from None
        except ValueError as e:
            raise ApiError(422, "no_embedding", str(e)) from None
        return _search(state, searcher, Encoded(query), body, start)

    return _json(await state.run(work))
