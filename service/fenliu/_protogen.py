"""Generate Python code from proto/fenliu into fenliu/_proto (run by ``make proto``).

``proto/google/rpc/*.proto`` are vendored copies for other languages' clients (Node, Go, ...); Python
takes those messages from googleapis-common-protos, so they are not generated here.

protoc writes imports as ``from fenliu.v1 import triage_pb2``; they are rewritten to
``fenliu._proto.fenliu.v1`` so that the generated code lives inside the fenliu package.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

_IMPORT = re.compile(r"^(from|import) fenliu\.", re.MULTILINE)


def main() -> int:
    root = Path(__file__).resolve().parents[2]
    protos = sorted((root / "proto" / "fenliu").rglob("*.proto"))
    if not protos:
        return 0
    import grpc_tools  # type: ignore[import-untyped]
    from grpc_tools import protoc

    out = Path(__file__).resolve().parent / "_proto"
    out.mkdir(exist_ok=True)
    include = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{root / 'proto'}",
        f"-I{include}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *[str(p) for p in protos],
    ]
    if protoc.main(args) != 0:
        print("protoc failed", file=sys.stderr)
        return 1
    for path in out.rglob("*.py*"):
        if path.suffix in (".py", ".pyi"):
            text = path.read_text(encoding="utf-8")
            fixed = _IMPORT.sub(r"\1 fenliu._proto.fenliu.", text)
            if fixed != text:
                path.write_text(fixed, encoding="utf-8")
    for d in [out, *(p for p in out.rglob("*") if p.is_dir() and p.name != "__pycache__")]:
        init = d / "__init__.py"
        if not init.exists():
            init.write_text("")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
