"""OpenAI-style error bodies for every failure the proxy can meet; no stack trace ever reaches a client."""

from __future__ import annotations

import asyncio
import logging

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from tfgrpo.errors import BudgetExceeded, LLMError, StoreError
from tfgrpo.serve.config import RequestError

log = logging.getLogger("tfgrpo.serve.app")

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
          404: "not_found_error", 413: "invalid_request_error", 429: "rate_limit_error"}


def error_body(message: str, *, type_: str = "api_error", code: str | None = None,
               param: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def error_response(status: int, message: str, *, code: str | None = None, param: str | None = None,
                   type_: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    kind = type_ or _TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return JSONResponse(error_body(message, type_=kind, code=code, param=param), status_code=status,
                        headers=headers)


def _causes(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def upstream_status(exc: LLMError) -> tuple[int, str]:
    """(HTTP status, error code) for an upstream failure: timeout 504, unreachable 502, rate limit 429,
    the upstream's own 4xx passed on (its auth failures become 502: the proxy's credentials are wrong)."""
    chain = list(_causes(exc))
    names = " ".join(type(e).__name__ for e in chain)
    if "Timeout" in names or any(isinstance(e, (asyncio.TimeoutError, httpx.TimeoutException)) for e in chain):
        return 504, "upstream_timeout"
    if "Connection" in names or "ConnectError" in names or "cannot connect" in str(exc):
        return 502, "upstream_unavailable"
    status = exc.status
    if status == 429:
        return 429, "upstream_rate_limited"
    if status in (401, 403):
        return 502, "upstream_auth_failed"
    if status is not None and 400 <= status < 500:
        return status, "upstream_rejected"
    return 502, "upstream_error"


def llm_error_response(exc: LLMError) -> JSONResponse:
    status, code = upstream_status(exc)
    return error_response(status, f"upstream model error: {exc}", code=code,
                          type_="api_error" if status >= 500 else None)


def install_handlers(app: FastAPI) -> None:
    """Map every exception class the proxy can raise to an OpenAI-style JSON error."""

    @app.exception_handler(RequestError)
    async def _request(_: Request, exc: RequestError):
        return error_response(exc.status, str(exc), code=exc.code, param=exc.param, type_=exc.type)

    @app.exception_handler(LLMError)
    async def _llm(_: Request, exc: LLMError):
        return llm_error_response(exc)

    @app.exception_handler(BudgetExceeded)
    async def _budget(_: Request, exc: BudgetExceeded):
        return error_response(429, str(exc), code="budget_exceeded", type_="insufficient_quota")

    @app.exception_handler(StoreError)
    async def _store(_: Request, exc: StoreError):
        return error_response(503, f"experience store: {exc}", code="store_error")

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error_response(400, f"invalid request: {where}: {first.get('msg', 'bad value')}", code="invalid_request")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException):
        return error_response(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _internal(_: Request, exc: Exception):
        log.exception("proxy internal error")
        return error_response(500, f"internal proxy error ({type(exc).__name__}); see the proxy's log",
                              code="internal_error")
