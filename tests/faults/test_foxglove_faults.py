"""The Foxglove server as an operator surface (issue 14, item 8): loopback by default, browser pages of
foreign origins refused, a token required off loopback. ``LiveServer`` (what ``krabgraph foxglove``
starts) with real websockets on 127.0.0.1 only, every wait bounded."""

from __future__ import annotations

import asyncio
import json
import socket
from contextlib import contextmanager

import pytest
import websockets
from websockets.exceptions import InvalidStatus

from krabgraph.launch.api.errors import KrabgraphError
from krabgraph.launch.cli.main import parser
from krabgraph.nodes.record.foxglove import TOKEN_ENV, LiveServer, WsGuard
from krabgraph.nodes.record.outlets import LiveOutlet

SUBPROTOCOLS = ["foxglove.sdk.v1", "foxglove.websocket.v1"]


@contextmanager
def live(**kw):
    """A server with no channels (the guard is what is tested), stopped on exit."""
    server = LiveServer(LiveOutlet(), port=0, **kw)
    try:
        yield server
    finally:
        server.stop()


async def first_frame(url: str, **kw) -> dict:
    async with websockets.connect(url, subprotocols=SUBPROTOCOLS, open_timeout=5, **kw) as ws:
        return json.loads(await asyncio.wait_for(ws.recv(), 5))


def status_of(url: str, **kw) -> int:
    """The HTTP status a refused handshake got (0 if it was accepted)."""
    try:
        asyncio.run(first_frame(url, **kw))
    except InvalidStatus as exc:
        return exc.response.status_code
    return 0


def test_loopback_by_default_and_foreign_origins_refused(no_thread_leak):
    assert parser().parse_args(["foxglove"]).host == "127.0.0.1"
    with live() as server:
        port = server.port
        url = f"ws://127.0.0.1:{port}"
        assert asyncio.run(first_frame(url))["op"] == "serverInfo"  # no Origin: a script or the desktop app
        assert asyncio.run(first_frame(url, origin="https://app.foxglove.dev"))["op"] == "serverInfo"
        assert status_of(url, origin="https://evil.example") == 403  # a web page the operator happens to open
        assert status_of(url, origin="null") == 403
        guard = server.guard
        assert guard.refused == {"origin": 2}
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:  # not HTTP at all
            raw.sendall(b"\x00\x01garbage\r\n\r\n")
            assert raw.recv(100).startswith(b"HTTP/1.1 400")


def test_allowed_origins_parameter():
    with live(origins=("http://localhost:*",)) as server:
        url = f"ws://127.0.0.1:{server.port}"
        assert asyncio.run(first_frame(url, origin="http://localhost:8080"))["op"] == "serverInfo"
        assert status_of(url, origin="https://app.foxglove.dev") == 403


def test_off_loopback_needs_a_token(monkeypatch, capsys):
    from krabgraph.launch.cli.main import main

    monkeypatch.delenv(TOKEN_ENV, raising=False)
    with pytest.raises(KrabgraphError) as err:
        LiveServer(LiveOutlet(), host="0.0.0.0", port=0)
    line = str(err.value)
    assert "--host 0.0.0.0 is off loopback" in line and "--token" in line and TOKEN_ENV in line
    assert main(["foxglove", "--host", "0.0.0.0", "--tap", "tcp://127.0.0.1:1", "--timeout", "0.1"]) == 1
    assert capsys.readouterr().err == f"error: {line}\n"  # refused before looking for a graph
    with live(host="0.0.0.0", token="s3cret") as server:
        assert server.token == "s3cret"
    monkeypatch.setenv(TOKEN_ENV, "from-env")
    with live(host="0.0.0.0") as server:
        assert server.token == "from-env"


def test_a_token_is_checked_when_set(no_thread_leak):
    with live(token="s3cret") as server:
        url = f"ws://127.0.0.1:{server.port}"
        assert status_of(url) == 401
        assert status_of(url + "/?token=wrong") == 401
        assert asyncio.run(first_frame(url + "/?token=s3cret"))["op"] == "serverInfo"
        auth = {"additional_headers": {"Authorization": "Bearer s3cret"}}
        assert asyncio.run(first_frame(url, **auth))["op"] == "serverInfo"


def test_the_guard_answers_a_silent_client_and_stops(no_thread_leak):
    guard = WsGuard("127.0.0.1", 0, 9, origins=[])  # inner port unused: nothing gets through
    try:
        with socket.create_connection(("127.0.0.1", guard.bound_port), timeout=8) as raw:
            raw.settimeout(8)
            assert raw.recv(100).startswith(b"HTTP/1.1 400")  # after HEAD_TIMEOUT_S without a request
    finally:
        guard.stop()
