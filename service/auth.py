"""API keys: who may call the model, checked before a single byte of the body is read.

``RESNET18_API_KEYS_FILE`` names a file of keys, one a line (``#`` starts a comment, blank lines are
ignored). When it is set, every path except the operational ones (:data:`OPEN_PATHS`: health checks
for the load balancer, metrics for the on-instance agent) needs ``Authorization: Bearer <key>``; a
missing or wrong key gets 401 with ``WWW-Authenticate`` (RFC 6750). Deny by default: an endpoint added
later is protected without anyone remembering to protect it.

Keys are never logged and never held in memory as given: only their SHA-256 digests are kept, and a
presented key's digest is compared with every one of them in constant time, so neither the answer time
nor an early exit tells a caller how close its guess was. The file is read again when it changes (its
mtime or size, checked at most every :data:`RELOAD_CHECK_S` seconds), so keys rotate without a restart.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.responses import JSONResponse

from .config import ConfigError
from .routes import HEALTH_ROUTES, METRICS_ROUTE
from .tally import Tally

logger = logging.getLogger(f"bentoml.{__name__}")  # BentoML only shows its own loggers
# Refusals run in front of BentoML's access log (service/middleware_order.py): counted here instead.
REFUSED = Tally(logger, "refused")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

ENV_VAR = "RESNET18_API_KEYS_FILE"
# Reachable without a key: load-balancer health checks and the CloudWatch agent's scrape on the instance.
# (The load balancer itself answers 404 for /metrics, see docs/deploy.md, so it is not public either.)
OPEN_PATHS = frozenset({*HEALTH_ROUTES, METRICS_ROUTE})
MIN_KEY_LENGTH = 16  # a shorter "key" is a password someone typed; refuse it at start-up
RELOAD_CHECK_S = 5.0
REALM = "elastic-resnet"


@dataclass(frozen=True)
class KeyFile:
    """The digests of the keys in one file, and what the file looked like when they were read."""

    path: Path
    digests: tuple[bytes, ...]
    stamp: tuple[float, int]  # (mtime, size)

    @classmethod
    def read(cls, path: Path) -> KeyFile:
        try:
            stat = path.stat()
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{ENV_VAR}={str(path)!r} cannot be read: {type(exc).__name__}") from None
        digests = []
        for number, key in keys_in(text):
            if len(key) < MIN_KEY_LENGTH or any(c.isspace() for c in key):
                # Name the line, never the key.
                raise ConfigError(
                    f"{ENV_VAR}: line {number} of {path} is not a usable key "
                    f"(at least {MIN_KEY_LENGTH} characters, no spaces)"
                )
            digests.append(_digest(key.encode()))
        if not digests:
            raise ConfigError(f"{ENV_VAR}: {path} holds no key; every request would be refused")
        return cls(path=path, digests=tuple(digests), stamp=(stat.st_mtime, stat.st_size))

    def accepts(self, key: bytes) -> bool:
        presented = _digest(key)
        matches = 0
        for digest in self.digests:  # no early exit: the time does not depend on which key matched
            matches |= hmac.compare_digest(presented, digest)
        return bool(matches)


class ApiKeys:
    """The keys in force, re-read when the file changes; a broken new file keeps the old keys."""

    def __init__(self, path: Path) -> None:
        self._keys = KeyFile.read(path)
        self._next_check = time.monotonic() + RELOAD_CHECK_S
        logger.info("API keys required on all but %s: %d key(s) from %s", sorted(OPEN_PATHS), len(self), path)

    def __len__(self) -> int:
        return len(self._keys.digests)

    def accepts(self, key: bytes) -> bool:
        self._reload_if_changed()
        return self._keys.accepts(key)

    def _reload_if_changed(self) -> None:
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + RELOAD_CHECK_S
        path = self._keys.path
        try:
            stat = path.stat()
        except OSError:
            logger.error("API keys file %s is gone; keeping the %d key(s) read before", path, len(self))
            return
        if (stat.st_mtime, stat.st_size) == self._keys.stamp:
            return
        try:
            self._keys = KeyFile.read(path)
        except ConfigError as exc:
            logger.error("API keys file changed but is not usable (%s); keeping the previous keys", exc)
            return
        logger.info("API keys reloaded from %s: %d key(s)", path, len(self))


def keys_in(text: str) -> list[tuple[int, str]]:
    """(line number, key) of each key in a keys file's text: what precedes a ``#``, stripped; blank lines
    skipped. The service reads its file this way, and `make deploy` the stack's parameter for its smoke test."""
    lines = ((number, line.split("#", 1)[0].strip()) for number, line in enumerate(text.splitlines(), start=1))
    return [(number, key) for number, key in lines if key]


def keys_from_env() -> ApiKeys | None:
    """The configured keys, or None (open service) with a loud warning. A bad file stops start-up."""
    raw = os.environ.get(ENV_VAR, "").strip()
    if not raw:
        logger.warning(
            "%s is not set: the API answers ANY caller. Set it to a file of keys before exposing this "
            "service beyond a trusted network (docs/deploy.md, 'Security').",
            ENV_VAR,
        )
        return None
    return ApiKeys(Path(raw))


class ApiKeyAuth:
    """ASGI middleware: 401 for a missing or wrong key, before the request body is read."""

    in_front_of_bentoml = True  # service/middleware_order.py

    def __init__(self, app: ASGIApp, keys: ApiKeys | None) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.keys is None or scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        key = _bearer_token(scope)
        if key is None:
            REFUSED.add("401 no key")
            await _unauthorized("missing API key: send 'Authorization: Bearer <key>'", None)(scope, receive, send)
            return
        if not self.keys.accepts(key):
            REFUSED.add("401 wrong key")
            await _unauthorized("invalid API key", "invalid_token")(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _digest(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()


def _bearer_token(scope: Scope) -> bytes | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, token = bytes(value).strip().partition(b" ")
            token = token.strip()
            return token if scheme.lower() == b"bearer" and token else None
    return None


def _unauthorized(message: str, error: str | None) -> JSONResponse:
    challenge = f'Bearer realm="{REALM}"' + (f', error="{error}"' if error else "")
    return JSONResponse({"error": message}, status_code=401, headers={"WWW-Authenticate": challenge})
