"""Errors the control plane raises and the API returns as JSON {"error", "type"} with their HTTP
status; the client turns them back into exceptions."""

from __future__ import annotations

from starlette.responses import JSONResponse


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
