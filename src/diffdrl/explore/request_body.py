"""The explorer's request checks: JSON bodies with known fields only, byte limits, JSON errors."""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import JSONResponse

MAX_JSON_BYTES = 1024 * 1024
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}


class RequestError(ValueError):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def error_response(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status, headers=SECURITY_HEADERS)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused (413) as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(f"upload too large: {declared} bytes, the limit is {limit} bytes", 413)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(f"upload too large: over {limit} bytes, the limit is {limit} bytes", 413)
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, allowed: dict[str, bool]) -> dict:
    """The JSON object body, with only ``allowed`` keys (True: required)."""
    raw = await read_body(request, MAX_JSON_BYTES)
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        raise RequestError("request body must be a JSON object") from None
    if not isinstance(body, dict):
        raise RequestError(f"request body must be a JSON object, got {type(body).__name__}")
    if unknown := sorted(set(body) - set(allowed)):
        raise RequestError(f"unknown field(s) {', '.join(unknown)} (allowed: {', '.join(allowed)})")
    if missing := [k for k, required in allowed.items() if required and k not in body]:
        raise RequestError(f"missing field(s): {', '.join(missing)}")
    return body
