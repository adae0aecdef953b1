"""Index info, health, readiness, Prometheus metrics, admin reload."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from service.deps import AdminDep, StateDep
from service.engine import EngineError
from service.errors import ApiError, error_body
from service.schemas import ErrorResponse, IndexInfo

router = APIRouter(tags=["system"])


@router.get("/v1/index", response_model=IndexInfo)
def index_info(state: StateDep) -> IndexInfo:
    m = state.engine.searcher.version.manifest
    return IndexInfo(
        version=m["version"],
        created_utc=m["created_utc"],
        items=int(m["counts"]["items"]),
        counts=m["counts"],
        dim=int(m["dim"]),
        steps_per_second=float(m["steps_per_second"]),
        factories=m["factories"],
        sequence_codec=m.get("build", {}).get("sequence_codec", "f16"),
        model_hash=m["model_hash"],
        search_policy={
            **state.engine.searcher.policy.to_dict(),
            "recorded": state.engine.searcher.policy.recorded,
        },
    )


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process answers (liveness)."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"model": ErrorResponse}})
def readyz(request: Request) -> JSONResponse:
    """The model and an index version are loaded (readiness): 200 while any version is served.

    Also says whether that is the published one: `index_version` (served), `published_version`
    (what CURRENT names; null if CURRENT is missing or names no version), `stale` (they differ)
    and `reload_error` (why the last reload failed; null once one succeeds). A stale service
    stays ready on purpose: it still answers from the last good version, and taking it out of
    rotation because a publish went wrong would turn one bad version into an outage.
    """
    state = getattr(request.app.state, "trimodal", None)
    if state is None:
        return JSONResponse(error_body("starting", "the service is starting"), status_code=503)
    return JSONResponse({"status": "ready", **state.engine.status()})


@router.get("/metrics", response_class=Response)
def metrics(state: StateDep) -> Response:
    state.metrics.stale.set(1 if state.engine.status()["stale"] else 0)
    return Response(state.metrics.render(), media_type="text/plain; version=0.0.4")


@router.post(
    "/v1/admin/reload",
    responses={
        401: {"model": ErrorResponse},
        403: {"model": ErrorResponse},
        409: {"model": ErrorResponse},
    },
)
async def reload(state: StateDep, _: AdminDep, force: bool = False) -> dict[str, object]:
    """Load the version CURRENT names beside the live one and swap it in (in-flight requests finish
    on the old one). 409 `reload_failed` with the reason if it cannot be loaded; the live version
    stays."""
    try:
        swapped, name = await state.run(state.engine.reload, force)
    except EngineError as e:
        state.reloaded(None)
        raise ApiError(409, "reload_failed", str(e)) from None
    state.reloaded(swapped)
    return {"swapped": swapped, "index_version": name}
