"""A guard in front of a Foxglove WebSocket server: Origin and token checks, then bytes spliced.

The foxglove-sdk server itself has no authentication and no Origin check, so it listens on an
ephemeral loopback port and the public ``host:port`` is a small front (``WsGuard``, a thread with an
asyncio loop) that reads each connection's HTTP upgrade request, refuses it with one HTTP status
(403: a browser page of a foreign origin; 401: a missing or wrong token; 503: too many clients), and
otherwise splices bytes both ways unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import hmac
import logging
import threading
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

from krabgraph.launch.api.errors import KrabgraphError
from krabgraph.launch.graph.endpoints import is_loopback

TOKEN_ENV = "KRABGRAPH_FOXGLOVE_TOKEN"
DEFAULT_ORIGINS = ("https://app.foxglove.dev",)
MAX_HEAD = 16 << 10  # bytes of an HTTP upgrade request
HEAD_TIMEOUT_S = 5.0
MAX_CLIENTS = 16
CHUNK = 1 << 16

log = logging.getLogger("krabgraph.foxglove")


def needs_token(host: str) -> bool:
    """Whether ``host`` is off loopback (then clients must give a token)."""
    return not is_loopback(f"tcp://{host}:1")


class WsGuard:
    """A TCP front for a WebSocket server on loopback: checks Origin and token, then splices bytes.

    ``origins``: allowed ``Origin`` values (globs); a request without ``Origin`` (not a browser) is
    let in. ``token``: required when set, as ``?token=...`` in the URL or ``Authorization: Bearer ...``.
    """

    def __init__(self, host: str, port: int, inner_port: int, *, origins: Sequence[str], token: str = ""):
        self.host, self.port, self.inner_port = host, port, inner_port
        self.origins, self.token = tuple(origins), token
        self.refused: dict[str, int] = {}
        self.active = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.AbstractServer | None = None
        started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, args=(started,), name="krabgraph-foxglove", daemon=True)
        self._thread.start()
        started.wait(10.0)
        if self._error is not None:
            raise KrabgraphError(f"Foxglove server: cannot listen on {host}:{port}: {self._error}")
        self.bound_port = self._server.sockets[0].getsockname()[1] if self._server else 0

    def _main(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._server = self._loop.run_until_complete(asyncio.start_server(self._serve, self.host, self.port))
        except (OSError, OverflowError) as exc:  # a busy or privileged port; one out of range
            self._error = exc
            started.set()
            return
        started.set()
        self._loop.run_forever()
        self._loop.close()

    def stop(self) -> None:
        def close() -> None:
            if self._server is not None:
                self._server.close()
            for task in asyncio.all_tasks(self._loop):
                task.cancel()
            self._loop.call_later(0.05, self._loop.stop)

        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(close)
            self._thread.join(timeout=2.0)

    def _refuse_reason(self, head: bytes) -> tuple[int, str] | None:
        """(HTTP status, why) if the upgrade request must be refused, else None."""
        try:
            lines = head.decode("latin-1").split("\r\n")
            _method, target, _version = lines[0].split(" ", 2)
        except ValueError:
            return 400, "not an HTTP request"
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        origin = headers.get("origin")
        if origin is not None and not any(fnmatch.fnmatchcase(origin, pattern) for pattern in self.origins):
            return 403, f"origin {origin[:100]!r} is not allowed (allowed_origins: {', '.join(self.origins) or 'none'})"
        if self.token:
            given = parse_qs(urlsplit(target).query).get("token", [""])[0]
            auth = headers.get("authorization", "")
            if auth.lower().startswith("bearer "):
                given = given or auth[7:].strip()
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                return 401, "missing or wrong token"
        return None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        try:
            if self.active >= MAX_CLIENTS:
                await self._refuse(writer, 503, f"{MAX_CLIENTS} clients connected already", peer)
                return
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT_S)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
                await self._refuse(writer, 400, "no complete HTTP request", peer)
                return
            if len(head) > MAX_HEAD:
                await self._refuse(writer, 431, "request head too large", peer)
                return
            reason = self._refuse_reason(head)
            if reason is not None:
                await self._refuse(writer, *reason, peer)
                return
            self.active += 1
            try:
                inner_reader, inner_writer = await asyncio.open_connection("127.0.0.1", self.inner_port)
                inner_writer.write(head)
                await asyncio.gather(_pipe(reader, inner_writer), _pipe(inner_reader, writer))
            finally:
                self.active -= 1
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _refuse(self, writer: asyncio.StreamWriter, status: int, why: str, peer: Any) -> None:
        kind = why.split(" ", 1)[0]
        if kind not in self.refused:
            log.warning("Foxglove server: refused a connection from %s: %s (further ones are counted)", peer, why)
        self.refused[kind] = self.refused.get(kind, 0) + 1
        text = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 431: "Too Large", 503: "Busy"}[status]
        writer.write(f"HTTP/1.1 {status} {text}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
        with contextlib.suppress(ConnectionError, TimeoutError):
            await asyncio.wait_for(writer.drain(), 1.0)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


__all__ = ["DEFAULT_ORIGINS", "MAX_CLIENTS", "TOKEN_ENV", "WsGuard", "needs_token"]
