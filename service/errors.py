"""One JSON error shape everywhere: `{"error": {"code": "...", "message": "...", "detail": ...}}`.

`code` is machine-readable and stable (clients switch on it); `message` is for people.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        detail: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.detail, self.headers = detail, headers


def error_body(code: str, message: str, detail: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if detail is not None:
        body["detail"] = detail
    return {"error": body}


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media",
    422: "invalid_request",
    429: "too_many_requests",
    503: "unavailable",
}


def install(app: FastAPI, on_error: Any = None) -> None:
    """Route every error through the one shape; `on_error(code)` counts them (metrics)."""

    def respond(status: int, code: str, message: str, detail: Any = None, headers=None):
        if on_error is not None:
            on_error(code)
        return JSONResponse(error_body(code, message, detail), status_code=status, headers=headers)

    @app.exception_handler(ApiError)
    async def _api(_: Request, e: ApiError) -> JSONResponse:
        return respond(e.status, e.code, e.message, e.detail, e.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        detail = [
            {"loc": list(err.get("loc", ())), "msg": str(err.get("msg", ""))} for err in e.errors()
        ]
        return respond(422, "invalid_request", "the request is not valid", detail)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, e: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(e.status_code, f"http_{e.status_code}")
        return respond(e.status_code, code, str(e.detail), None, getattr(e, "headers", None))

    @app.exception_handler(Exception)
    async def _crash(_: Request, e: Exception) -> JSONResponse:  # logged by the middleware
        # Starlette re-raises the error after this answer, and uvicorn then closes the socket: a
        # keep-alive client not told so would send its next request into a reset connection.
        return respond(500, "internal", "internal error", headers={"Connection": "close"})
