"""Item routes: metadata, the media file (with HTTP range requests) and a thumbnail.

Media is served only for ids found in the live version's item table, from the path recorded at
build time: nothing in the request is ever used as a path.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, Response

from models.media import MediaError
from service.deps import StateDep
from service.errors import ApiError
from service.schemas import ErrorResponse, Item, item_urls

router = APIRouter(prefix="/v1/items", tags=["items"])
NOT_FOUND: dict[int | str, dict] = {404: {"model": ErrorResponse}}


def _record(state: StateDep, item_id: str):
    found = state.engine.searcher.items.by_id(item_id)
    if found is None:
        raise ApiError(404, "not_found", f"no item {item_id!r} in the index")
    return found[1]


@router.get("/{item_id}", response_model=Item, responses=NOT_FOUND)
def get_item(item_id: str, state: StateDep) -> Item:
    r = _record(state, item_id)
    return Item(
        id=r.id,
        title=r.title,
        duration_s=r.duration_s,
        has_audio=r.has_audio,
        has_video=r.has_video,
        meta=r.meta,
        **item_urls(r.id, r.has_video),
    )


@router.get("/{item_id}/media", responses=NOT_FOUND, response_class=FileResponse)
def get_media(item_id: str, state: StateDep) -> FileResponse:
    """The item's media file; supports `Range` so a browser can seek to a segment."""
    r = _record(state, item_id)
    path = Path(r.media)
    if not path.is_file():
        raise ApiError(404, "media_missing", "the item's media file is no longer where it was")
    media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return FileResponse(path, media_type=media_type, content_disposition_type="inline")


@router.get(
    "/{item_id}/thumbnail",
    responses={**NOT_FOUND, 200: {"content": {"image/jpeg": {}}}},
    response_class=Response,
)
async def get_thumbnail(item_id: str, state: StateDep) -> Response:
    """A JPEG of the frame in the middle of the item's video."""
    r = _record(state, item_id)
    if not r.has_video:
        raise ApiError(404, "no_video", "the item has no pictures")

    version = state.engine.searcher.name

    def work() -> bytes:
        try:
            return state.thumbnails.get(version, r.id, r.media, r.duration_s)
        except (MediaError, ValueError) as e:
            raise ApiError(404, "no_thumbnail", f"cannot make a thumbnail: {e}") from None

    # Made once, then served from memory; made beside the searches, never in their slots.
    data = state.thumbnails.cached(version, r.id)
    if data is None:
        data = await state.run_aside(work)
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})
