"""Errors as the API answers them: always `{"error": {"code", "message"}}`.

Endpoints raise `ApiError` (or one of the library errors mapped here);
`install_error_handlers` turns every error, FastAPI's own validation and
HTTP errors included, into that one shape.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import InterfaceError as SQLInterfaceError
from starlette.exceptions import HTTPException as StarletteHTTPException

from flamesight.server.repository import NotFound

STATUS_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    500: "internal_error",
    503: "unavailable",
}

DATABASE_UNAVAILABLE = "the database is not reachable right now; try again in a moment"


class ApiError(Exception):
    """An error answer: HTTP status, a short machine-readable code and a message for people."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def bad_parameter(message: str) -> ApiError:
    """A 400 for a query parameter the request got wrong."""
    return ApiError(400, "bad_parameter", message)


def error_response(status: int, code: str, message: str) -> JSONResponse:
    """The JSON error document with its status."""
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error of `app` in the one error shape."""

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, error: ApiError) -> JSONResponse:
        return error_response(error.status, error.code, error.message)

    @app.exception_handler(NotFound)
    async def not_found(_request: Request, error: NotFound) -> JSONResponse:
        return error_response(404, "not_found", str(error))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = STATUS_CODES.get(error.status_code, "error")
        return error_response(error.status_code, code, str(error.detail))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, error: RequestValidationError) -> JSONResponse:
        problems = []
        for problem in error.errors():
            where = ".".join(str(part) for part in problem.get("loc", ()) if part != "query")
            problems.append(f"{where}: {problem.get('msg', 'invalid')}")
        return error_response(422, "invalid_request", "; ".join(problems) or "invalid request")

    @app.exception_handler(DBAPIError)
    async def database_error(_request: Request, error: DBAPIError) -> JSONResponse:
        if _database_unreachable(error):
            return error_response(503, "unavailable", DATABASE_UNAVAILABLE)
        raise error

    @app.exception_handler(OSError)
    async def os_error(_request: Request, error: OSError) -> JSONResponse:
        # asyncpg raises the socket's own error when it cannot connect at all.
        if isinstance(error, ConnectionError | TimeoutError):
            return error_response(503, "unavailable", DATABASE_UNAVAILABLE)
        raise error

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, _error: Exception) -> JSONResponse:
        # Starlette re-raises the error after this answer, so the server logs it.
        return error_response(500, "internal_error", "internal server error")


def _database_unreachable(error: DBAPIError) -> bool:
    """Whether `error` says the database connection failed (not that a statement was wrong)."""
    return error.connection_invalidated or isinstance(error, OperationalError | SQLInterfaceError)
