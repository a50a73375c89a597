"""Checks of key files and private directories, run by validation (``krabgraph check``) before anything starts.

One line each: a secret key readable or writable by anyone but its owner; a folder of authorized
client keys (or a key in it) that others may write, which would let them authorize themselves; a
private directory for ipc sockets that is not a directory of this user's, 0700; a CURVE server
configuration (certificate file, client-key directory) that cannot work. Per-process keys
(``security: {curve: {keys: {PROCESS: file}}}``) give each process its own identity:
``process_secret`` says which key a process serves. Making keys and setting up CURVE/ZAP at run
time: ``launch/runtime/security.py``.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from krabgraph.launch.graph.declaration import CurveSpec

SECRET_SUFFIX = ".key_secret"
PUBLIC_SUFFIX = ".key"
KEYS_COMMAND = "krabgraph keys DIR NAME"  # how messages say to make a key pair


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
        return f"{where}: secret_key {str(p)!r} is not a file (make one: `{KEYS_COMMAND}`)"
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


def check_curve(secret_key: str, clients: str, where: str) -> list[str]:
    """Problems with a CURVE server configuration (certificate file, client-key directory)."""
    import zmq

    errors = []
    if not zmq.has("curve"):
        errors.append(f"{where}: this libzmq has no CURVE support")
    problem = secret_key_problem(secret_key, where)
    if problem:
        errors.append(problem)
    errors += clients_dir_problems(clients, where)
    return errors
