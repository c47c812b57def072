"""Errors of the HTTP API, as the OpenAI API reports them:
{"error": {"message": ..., "type": ..., "param": ..., "code": ...}} with an HTTP status."""

from __future__ import annotations

import re
from typing import Any

#: HTTP status -> OpenAI error type
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    503: "server_error",
}


# the engine's message prefixes ("[batch] ", "[kv] ", "[generate] ", ...) at the start of a message
# or of a clause ("image 0: [image] ..."): where in the engine, not something an API client can use
_ENGINE_PREFIX = re.compile(r"(^|: )\[[a-z][a-z0-9_]*\] ")


def public_message(message: str) -> str:
    """`message` as an HTTP client sees it: without the engine's "[area] " prefixes."""
    return _ENGINE_PREFIX.sub(r"\1", message)


#: seconds a 503 (queue full) asks the client to wait before it retries
RETRY_AFTER_S = 1


class APIError(Exception):
    """An error answered with `status` and the OpenAI error JSON (the message without the engine's
    "[area] " prefixes)."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None):
        message = public_message(message)
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        # a busy server says when to retry (the openai client honours Retry-After on its retries)
        self.headers: dict[str, str] = {"Retry-After": str(RETRY_AFTER_S)} if status == 503 else {}

    def body(self) -> dict[str, Any]:
        return error_body(self.status, self.message, param=self.param, code=self.code)


def error_body(status: int, message: str, *, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {
        "error": {
            "message": public_message(message),
            "type": ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error"),
            "param": param,
            "code": code,
        }
    }


def bad_request(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)
