"""CURVE key pairs for ``security:`` and the tap: created private, checked before use.

``python -m krabgraph.launch.keys DIR NAME [NAME ...]`` writes ``DIR/NAME.key`` (public, 0644) and
``DIR/NAME.key_secret`` (secret, 0600) for each name, in a directory it creates 0700 (``zmq.auth``'s
own ``create_certificates`` leaves the secret key as the umask makes it, 0644 by default). The files
are ``zmq.auth`` certificates: ``zmq.auth.load_certificate`` reads them.

Checks used by validation (``krabgraph check``), one line each: a secret key readable or writable by
anyone but its owner; a folder of authorized client keys (or a key in it) that others may write, which
would let them authorize themselves; a private directory for ipc sockets that is not a directory of
this user's, 0700. Per-process keys (``security: {curve: {keys: {PROCESS: file}}}``) give each process
its own identity: ``process_secret`` and ``process_public`` say which key a process serves and which
public key its subscribers pin for a topic that process publishes.
"""

from __future__ import annotations

import datetime
import os
import stat
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import zmq

from krabgraph.launch.errors import KrabgraphError

if TYPE_CHECKING:
    from krabgraph.launch.graph import CurveSpec

SECRET_SUFFIX = ".key_secret"
PUBLIC_SUFFIX = ".key"


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


def _mode(st: os.stat_result) -> str:
    return f"{stat.S_IMODE(st.st_mode):04o}"


def _owner_ok(st: os.stat_result) -> bool:
    return st.st_uid in (os.getuid(), 0)


def secret_key_problem(path: str | os.PathLike, where: str) -> str:
    """Why the secret key file ``path`` must not be used ("" if it may): missing, or open to others."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError:
        return f"{where}: secret_key {str(p)!r} is not a file (make one: `python -m krabgraph.launch.keys DIR NAME`)"
    if not stat.S_ISREG(st.st_mode):
        return f"{where}: secret_key {str(p)!r} is not a file"
    if not _owner_ok(st):
        return f"{where}: secret_key {p} belongs to uid {st.st_uid}, not to you; use a key of your own"
    if st.st_mode & 0o077:
        return (
            f"{where}: secret_key {p} is open to other users (mode {_mode(st)}): whoever reads it can pose as this "
            f"graph; run `chmod 600 {p}`"
        )
    return ""


def clients_dir_problems(path: str | os.PathLike, where: str) -> list[str]:
    """Why the authorized-clients folder ``path`` must not be used: missing, or writable by others."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError:
        return [f"{where}: clients {str(p)!r} is not a directory of client certificates"]
    if not stat.S_ISDIR(st.st_mode):
        return [f"{where}: clients {str(p)!r} is not a directory of client certificates"]
    if not _owner_ok(st):
        return [f"{where}: clients folder {p} belongs to uid {st.st_uid}, not to you; use a folder of your own"]
    if st.st_mode & 0o022:
        return [
            f"{where}: clients folder {p} is writable by other users (mode {_mode(st)}): they could authorize "
            f"their own key; run `chmod go-w {p}`"
        ]
    open_keys = []
    for cert in sorted(p.glob(f"*{PUBLIC_SUFFIX}")):
        try:
            cst = cert.stat()
        except OSError:
            continue
        if cst.st_mode & 0o022 or not _owner_ok(cst):
            open_keys.append(cert.name)
    if open_keys:
        return [
            f"{where}: authorized keys in {p} are writable by other users or not yours ({', '.join(open_keys[:5])}"
            f"{', ...' if len(open_keys) > 5 else ''}): they could authorize their own key; run `chmod go-w {p}/*.key`"
        ]
    return []


def private_dir_problem(path: str | os.PathLike, what: str = "ipc sockets") -> str:
    """Why ``path`` cannot hold private sockets ("" if it can, or if it does not exist yet).

    It must be a real directory (not a symlink) owned by this user with mode 0700: anyone else who can
    write there can bind a socket in it first, or replace one.
    """
    p = Path(path)
    try:
        st = p.lstat()
    except FileNotFoundError:
        return ""
    except OSError as exc:
        return f"the directory for {what}, {p}, cannot be read: {exc.strerror}"
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        return f"the directory for {what}, {p}, is not a directory (a symlink or a file?); remove it"
    if st.st_uid != os.getuid():
        return (
            f"the directory for {what}, {p}, belongs to uid {st.st_uid}, not to you (uid {os.getuid()}): another "
            "account could bind or replace this graph's sockets; remove it (as its owner or root) or set TMPDIR"
        )
    if st.st_mode & 0o077:
        return (
            f"the directory for {what}, {p}, is open to other users (mode {_mode(st)}); they could bind or replace "
            f"this graph's sockets; run `chmod 700 {p}`"
        )
    return ""


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


def process_secret(curve: CurveSpec, process: str) -> str:
    """The certificate file ``process`` serves and connects with: its own key, else the graph's."""
    keys = getattr(curve, "keys", None) or {}
    return keys.get(process) or curve.secret_key


def public_half(secret_key: str | os.PathLike) -> Path:
    """The public certificate beside a secret one (``NAME.key`` for ``NAME.key_secret``), else itself:
    a host needs the secret file of its own processes only, and the public halves of the others."""
    secret = Path(secret_key)
    public = secret.with_suffix(".key") if secret.suffix == ".key_secret" else secret
    return public if public.is_file() else secret


def process_public(curve: CurveSpec, process: str) -> bytes:
    """The public key a subscriber pins for a topic ``process`` publishes (``curve_serverkey``)."""
    import zmq.auth

    path = public_half(process_secret(curve, process))
    try:
        public, _ = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise KeyFileError(f"key of process {process!r}: cannot read {path}: {exc}") from None
    return public


def main(argv: list[str] | None = None) -> int:
    """``python -m krabgraph.launch.keys DIR NAME [NAME ...]``: make key pairs, secret halves 0600."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2 or args[0] in ("-h", "--help"):
        print("usage: python -m krabgraph.launch.keys DIR NAME [NAME ...]", file=sys.stderr)
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
