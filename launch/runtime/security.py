"""Security at run time: CURVE key pairs made private, CURVE servers and clients, the ZAP authenticator.

``krabgraph keys DIR NAME [NAME ...]`` (or ``python -m krabgraph.launch.runtime.security DIR NAME ...``)
writes ``DIR/NAME.key`` (public, 0644) and ``DIR/NAME.key_secret`` (secret, 0600) for each name, in a
directory it creates 0700 (``zmq.auth``'s own ``create_certificates`` leaves the secret key as the umask
makes it, 0644 by default). The files are ``zmq.auth`` certificates: ``zmq.auth.load_certificate``
reads them.

At run time: ``private_dir`` makes (or checks) the private directory for ipc sockets right before
binding; ``process_public`` says which public key subscribers pin for a topic a process publishes;
``curve_server``/``curve_client``/``release_auth`` set up CURVE on the tap's and the transport's
sockets, with one ZAP authenticator per context. The checks that validation runs on key files before
anything starts are in ``launch/graph/keyfiles.py``.
"""

from __future__ import annotations

import datetime
import logging
import os
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import zmq

from krabgraph.launch.api.errors import KrabgraphError
from krabgraph.launch.graph.keyfiles import (
    PUBLIC_SUFFIX,
    SECRET_SUFFIX,
    private_dir_problem,
    process_secret,
    public_half,
)

if TYPE_CHECKING:
    from krabgraph.launch.graph.declaration import CurveSpec


class KeyFileError(KrabgraphError):
    """A key file or key directory that cannot be used as it is."""


def _certificate(public: bytes, secret: bytes | None) -> str:
    kind = "**Secret**" if secret else "Public"
    lines = [
        f"#   ****  Generated on {datetime.datetime.now()} by krabgraph  ****",
        f"#   ZeroMQ CURVE {kind} Certificate",
        "#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions." if secret else "#",
        "metadata",
        "curve",
        f'    public-key = "{public.decode()}"',
    ]
    if secret:
        lines.append(f'    secret-key = "{secret.decode()}"')
    return "\n".join(lines) + "\n"


def _write_new(path: Path, text: str, mode: int) -> None:
    """Create ``path`` with ``mode`` (never through a symlink, never over an existing file)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    except FileExistsError:
        raise KeyFileError(f"{path} exists; remove it first to make a new key (nothing was written)") from None
    try:
        os.fchmod(fd, mode)  # whatever the umask says
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def create_keys(directory: str | os.PathLike, name: str) -> tuple[Path, Path]:
    """Make a CURVE key pair: ``directory/name.key`` (0644) and ``directory/name.key_secret`` (0600).

    The directory is created 0700 if missing. Refuses to overwrite either file. Returns both paths.
    """
    if not name or "/" in name or name.startswith("."):
        raise KeyFileError(f"key name {name!r}: use a plain file name such as 'graph' or 'brain'")
    folder = Path(directory)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    public, secret = zmq.curve_keypair()
    public_path, secret_path = folder / f"{name}{PUBLIC_SUFFIX}", folder / f"{name}{SECRET_SUFFIX}"
    for path in (public_path, secret_path):
        if path.exists() or path.is_symlink():
            raise KeyFileError(f"{path} exists; remove it first to make a new key (nothing was written)")
    _write_new(secret_path, _certificate(public, secret), 0o600)
    _write_new(public_path, _certificate(public, None), 0o644)
    return public_path, secret_path


def private_dir(path: str | os.PathLike, what: str = "ipc sockets") -> Path:
    """Create ``path`` 0700, or check an existing one is this user's and 0700; raise ``KeyFileError`` if not.

    For the runtime, right before binding: ``ipc_dir()`` should come through here rather than through
    ``mkdir(exist_ok=True)``, which accepts a directory another account made first.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    try:
        p.mkdir(mode=0o700)
        os.chmod(p, 0o700)  # whatever the umask says
    except FileExistsError:
        pass
    problem = private_dir_problem(p, what)
    if problem:
        raise KeyFileError(problem)
    return p


def process_public(curve: CurveSpec, process: str) -> bytes:
    """The public key a subscriber pins for a topic ``process`` publishes (``curve_serverkey``)."""
    import zmq.auth

    path = public_half(process_secret(curve, process))
    try:
        public, _ = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise KeyFileError(f"key of process {process!r}: cannot read {path}: {exc}") from None
    return public


class _AuthLog(logging.LoggerAdapter):
    """The ZAP authenticator's log: a refused peer (pyzmq logs "DENIED" at debug) becomes a warning."""

    def __init__(self, logger: logging.Logger):
        super().__init__(logger, {})
        self.refused = 0

    def debug(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        text = str(msg) % args if args else str(msg)
        if text.startswith("DENIED"):
            self.refused += 1
            self.logger.warning("refused a peer: %s", text)
        else:
            self.logger.debug(msg, *args, **kwargs)


_auths: dict[int, list[Any]] = {}  # id(context) -> [ThreadAuthenticator, users, context]
_auths_lock = threading.Lock()


def curve_server(context: zmq.Context, sock: zmq.Socket, secret_key: str, clients: str, *, domain: str = "*",
                 where: str = "") -> Any:  # fmt: skip
    """Make ``sock`` a CURVE server that lets in only the public keys in the ``clients`` directory.

    Starts the context's ZAP authenticator (one per context, shared by the tap and the graph's
    transport, each on its own ZAP domain); call ``release_auth(context)`` once per call when done.
    Call before binding the endpoints that need CURVE. Returns the authenticator.
    """
    import zmq.auth
    from zmq.auth.thread import ThreadAuthenticator

    public, secret = zmq.auth.load_certificate(secret_key)
    if secret is None:
        raise KeyFileError(f"{where}: {secret_key} holds no secret key")
    with _auths_lock:
        entry = _auths.get(id(context))
        if entry is None or entry[2] is not context:  # (the entry holds its context: an id is never reused)
            auth = ThreadAuthenticator(context, log=_AuthLog(logging.getLogger("krabgraph.auth")))
            auth.start()
            entry = _auths[id(context)] = [auth, 0, context]
        entry[1] += 1
    entry[0].configure_curve(domain=domain, location=clients)
    if domain != "*":
        sock.zap_domain = domain.encode()
    sock.curve_secretkey = secret
    sock.curve_publickey = public
    sock.curve_server = True
    return entry[0]


def release_auth(context: zmq.Context) -> None:
    with _auths_lock:
        entry = _auths.get(id(context))
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] > 0:
            return
        del _auths[id(context)]
    entry[0].stop()


def curve_client(sock: zmq.Socket, secret_key: str, server_public: bytes | None = None) -> None:
    """Make ``sock`` a CURVE client with the key pair in ``secret_key`` (server key: its own by default)."""
    import zmq.auth

    public, secret = zmq.auth.load_certificate(secret_key)
    sock.curve_secretkey = secret
    sock.curve_publickey = public
    sock.curve_serverkey = server_public or public


def main(argv: list[str] | None = None) -> int:
    """``krabgraph keys DIR NAME [NAME ...]``: make key pairs, secret halves 0600."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2 or args[0] in ("-h", "--help"):
        print("usage: krabgraph keys DIR NAME [NAME ...]", file=sys.stderr)
        print("  writes DIR/NAME.key (public, 0644) and DIR/NAME.key_secret (secret, 0600)", file=sys.stderr)
        return 2
    try:
        for name in args[1:]:
            public, secret = create_keys(args[0], name)
            print(f"{public} (public)  {secret} (secret, 0600)")
    except (KeyFileError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
