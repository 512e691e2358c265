"""The service's one error shape and its outermost layer.

Every error is ``{"error": {"code", "message"}}`` (:data:`ERROR_CODES` lists the codes);
:class:`RequestGuard` checks the optional bearer token, the requests in progress, the body
size and its deadline before the app reads anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from typing import TYPE_CHECKING

from fastapi.responses import JSONResponse
from pydantic import BaseModel

from ptssnn.errors import (
    AudioError,
    EmptyAudioError,
    NonFiniteAudioError,
    SilentAudioError,
    TooLargeAudioError,
    TooLongAudioError,
    TooShortAudioError,
    UnreadableAudioError,
    UnsupportedChannelsError,
    UnsupportedSampleRateError,
)

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send


#: Status and code of each audio error (the most specific class first).
_AUDIO_ERRORS: tuple[tuple[type[AudioError], int, str], ...] = (
    (TooLargeAudioError, 413, "audio_too_large"),
    (TooLongAudioError, 413, "audio_too_long"),
    (UnsupportedSampleRateError, 415, "unsupported_sample_rate"),
    (UnsupportedChannelsError, 415, "unsupported_channels"),
    (UnreadableAudioError, 415, "unreadable_audio"),
    (EmptyAudioError, 422, "empty_audio"),
    (SilentAudioError, 422, "silent_audio"),
    (NonFiniteAudioError, 422, "non_finite_audio"),
    (TooShortAudioError, 422, "audio_too_short"),
)

#: Every ``error.code`` the service answers with, and its HTTP status.
ERROR_CODES: dict[str, int] = {
    "unauthorized": 401,
    "not_found": 404,
    "method_not_allowed": 405,
    "request_timeout": 408,
    "server_busy": 503,
    "upload_too_large": 413,
    "invalid_request": 422,
    "bad_request": 400,
    "internal_error": 500,
    **{code: status for _, status, code in _AUDIO_ERRORS},
    "bad_audio": 422,
    # Speaker profiles (``--profiles DIR``).
    "invalid_profile_id": 422,
    "profile_not_found": 404,
    "profile_exists": 409,
    "profile_mismatch": 409,
    "profiles_disabled": 404,
    "too_many_files": 413,
    "profile_store_full": 507,
}


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    """The one error shape: ``{"error": {"code": "...", "message": "..."}}``."""

    error: ErrorDetail


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """A JSON error in the service's one shape."""
    return JSONResponse(
        status_code=status,
        content={"error": {"code": code, "message": message}},
        headers=headers,
    )


class ApiError(Exception):
    """Raised by the endpoints; turned into :func:`error_response`."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def audio_error(error: AudioError, name: str) -> ApiError:
    """The API error for an audio error, naming the client's file, not a temporary path."""
    for kind, status, code in _AUDIO_ERRORS:
        if isinstance(error, kind):
            return ApiError(status, code, f"{name}: {error.detail}")
    return ApiError(422, "bad_audio", f"{name}: {error.detail}")


class _Refused(Exception):
    """Raised inside the receive channel when the body breaks a limit."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class RequestGuard:
    """ASGI middleware: token, requests in progress, body size and deadline, before the app.

    FastAPI's form parser turns any exception raised while it reads the body into a 400
    "error parsing the body"; so the refusal is remembered here, whatever the app then
    sends is dropped, and the real answer (413 or 408) goes out instead.

    Args:
        app: The wrapped app.
        max_bytes: Largest accepted request body.
        timeout_s: Time the whole body has to arrive, from the request's start.
        max_requests: Requests in progress at once (waiting, uploading or running); more
            get 503 at once rather than a growing queue.
        token: Required bearer token (``None``: no authentication).
    """

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        timeout_s: float,
        max_requests: int = 64,
        token: str | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self.max_requests = max_requests
        self.in_progress = 0  # one event loop: no lock needed
        self.token = token.encode() if token else None

    def _authorised(self, scope: Scope) -> bool:
        if self.token is None:
            return True
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                scheme, _, credentials = value.partition(b" ")
                # Constant time: the comparison must not tell how much of a guess was right.
                return scheme.lower() == b"bearer" and hmac.compare_digest(
                    credentials.strip(), self.token
                )
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not self._authorised(scope):
            # Refused before the body is read: an unauthenticated upload costs nothing.
            denied = _Refused(
                401,
                "unauthorized",
                "a valid bearer token is required (header 'Authorization: Bearer <token>')",
            )
            await self._refuse(denied, scope, send, {"WWW-Authenticate": "Bearer"})
            return
        if self.in_progress >= self.max_requests:
            busy = _Refused(
                503, "server_busy", f"{self.max_requests} requests are in progress; retry later"
            )
            await self._refuse(busy, scope, send)
            return
        self.in_progress += 1
        try:
            await self._guarded(scope, receive, send)
        finally:
            self.in_progress -= 1

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit_mb = self.max_bytes / 1e6
        too_large = _Refused(
            413, "upload_too_large", f"upload larger than the limit of {limit_mb:g} MB"
        )
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > self.max_bytes:
                    await self._refuse(too_large, scope, send)
                    return

        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        received = 0
        body_done = False
        refused: _Refused | None = None
        started = False

        async def guarded_receive() -> Message:
            nonlocal received, body_done, refused
            if refused is not None:
                raise refused
            if body_done:
                return await receive()  # only a disconnect can follow the body
            try:
                message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0.0))
            except TimeoutError:
                refused = _Refused(
                    408,
                    "request_timeout",
                    f"the request body did not arrive within {self.timeout_s:g} s",
                )
                raise refused from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    refused = too_large
                    raise refused
                body_done = not message.get("more_body", False)
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused is not None:
                return  # the app's answer to a broken body; ours goes out below
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        with contextlib.suppress(_Refused):
            await self.app(scope, guarded_receive, guarded_send)
        if refused is not None and not started:
            await self._refuse(refused, scope, send)

    @staticmethod
    async def _refuse(
        refusal: _Refused, scope: Scope, send: Send, headers: dict[str, str] | None = None
    ) -> None:
        # Connection: close, since the rest of the body is never read.
        response = error_response(
            refusal.status,
            refusal.code,
            refusal.message,
            headers={"Connection": "close", **(headers or {})},
        )

        async def no_body() -> Message:
            return {"type": "http.disconnect"}

        await response(scope, no_body, send)
