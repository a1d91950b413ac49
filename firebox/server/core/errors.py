"""Errors the control plane raises and the API returns as JSON {"error", "type"} with their HTTP
status; the client turns them back into exceptions."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.responses import JSONResponse

if TYPE_CHECKING:
    from pydantic import ValidationError


class ApiError(Exception):
    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


def error_response(status: int, kind: str, message: str) -> JSONResponse:
    return JSONResponse({"error": message, "type": kind}, status_code=status)


def not_found(message: str) -> ApiError:
    return ApiError(404, "NotFoundError", message)


def invalid(message: str) -> ApiError:
    return ApiError(400, "InvalidError", message)


def problems(exc: ValidationError, limit: int = 5) -> str:
    """The first few faults of a validation error, as 'field: what is wrong'."""
    out = []
    for e in exc.errors(include_url=False, include_input=False)[:limit]:
        where = ".".join(str(p) for p in e["loc"]) or "the body"
        msg = e["msg"].removeprefix("Value error, ")
        out.append(f"{where}: {msg[:1].lower()}{msg[1:]}")
    more = len(exc.errors()) - limit
    return "; ".join(out) + (f" (and {more} more)" if more > 0 else "")


def invalid_request(what: str, exc: ValidationError) -> ApiError:
    """A request (or a spec in it) that failed its model's validation: 422, with the faults."""
    return ApiError(422, "InvalidError", f"{what} is not valid: {problems(exc)}.")
