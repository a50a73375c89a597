"""Generate the ``*_pb2.py`` modules from ``msgs/*.proto`` with grpcio-tools.

Run ``python msgs/codegen.py`` (``make msgs``) after editing a ``.proto`` file;
``--check`` exits 1 if the committed modules are stale.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

MSGS_DIR = Path(__file__).resolve().parent


def proto_files() -> list[Path]:
    return sorted(MSGS_DIR.glob("*.proto"))


def generate(out_dir: Path) -> list[Path]:
    """Compile every .proto into ``out_dir``; return the generated files."""
    import grpc_tools
    from grpc_tools import protoc  # build-time dependency only

    with tempfile.TemporaryDirectory() as tmp:
        # Protos import each other as "krabgraph/msgs/x.proto" so the generated code imports
        # "krabgraph.msgs.x_pb2"; lay out that include root with a copy of the sources.
        root = Path(tmp) / "src"
        pkg = root / "krabgraph" / "msgs"
        pkg.mkdir(parents=True)
        for proto in proto_files():
            shutil.copy(proto, pkg / proto.name)
        gen = Path(tmp) / "gen"
        gen.mkdir()
        well_known = Path(grpc_tools.__file__).parent / "_proto"
        args = ["protoc", f"-I{root}", f"-I{well_known}", f"--python_out={gen}"]
        args += [f"krabgraph/msgs/{p.name}" for p in proto_files()]
        if protoc.main(args) != 0:
            raise RuntimeError("protoc failed: " + " ".join(args))
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for src in sorted((gen / "krabgraph" / "msgs").glob("*_pb2.py")):
            dst = out_dir / src.name
            shutil.copy(src, dst)
            written.append(dst)
        return written


def stale_files() -> list[str]:
    """Names of generated modules that differ from a fresh generation (or are missing/extra)."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = {p.name: p for p in generate(Path(tmp))}
        committed = {p.name: p for p in MSGS_DIR.glob("*_pb2.py")}
        names = sorted(set(fresh) | set(committed))
        return [
            n
            for n in names
            if n not in fresh or n not in committed or not filecmp.cmp(fresh[n], committed[n], shallow=False)
        ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the generated code is stale")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        if stale:
            print(f"stale generated protobuf code: {', '.join(stale)}; run `make msgs`", file=sys.stderr)
            return 1
        print("generated protobuf code is up to date")
        return 0
    for path in generate(MSGS_DIR):
        print(f"wrote {path.relative_to(MSGS_DIR.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
