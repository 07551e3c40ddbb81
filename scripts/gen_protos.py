#!/usr/bin/env python3
"""Regenerate the Python modules of the wire contract.

    python scripts/gen_protos.py          # write voxrelay/protos/recognizer_pb2*.py(i)
    python scripts/gen_protos.py --check  # exit 1 if the committed modules are stale

The contract lives in protos/voxrelay/v1/*.proto (protobuf package voxrelay.v1). The generated
modules are flattened into the voxrelay.protos package; the one absolute import that protoc writes
between them is made relative so the package can live anywhere.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
OUT = ROOT / "voxrelay" / "protos"
PROTOS = sorted(PROTO_ROOT.glob("voxrelay/v1/*.proto"))


def generate() -> dict[str, str]:
    """Run protoc and return {file name: content} of the generated modules."""
    try:
        from grpc_tools import protoc
    except ImportError as err:
        raise SystemExit("gen_protos needs grpcio-tools: pip install 'voxrelay[test]'") from err
    import grpc_tools

    include = Path(grpc_tools.__file__).parent / "_proto"
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "protoc",
            f"-I{PROTO_ROOT}",
            f"-I{include}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            *(str(p) for p in PROTOS),
        ]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        files: dict[str, str] = {}
        for path in sorted(Path(tmp, "voxrelay", "v1").iterdir()):
            text = path.read_text()
            # `from voxrelay.v1 import x_pb2 as ...` -> `from . import x_pb2 as ...`
            text = re.sub(r"^from voxrelay\.v1 import ", "from . import ", text, flags=re.M)
            files[path.name] = text
        return files


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail if the committed modules are stale")
    args = parser.parse_args()
    files = generate()
    if args.check:
        stale = [name for name, text in files.items() if not (OUT / name).is_file() or (OUT / name).read_text() != text]
        if stale:
            print(
                f"stale generated modules: {', '.join(stale)}; run python scripts/gen_protos.py",
                file=sys.stderr,
            )
            return 1
        print("generated modules are up to date")
        return 0
    for name, text in files.items():
        (OUT / name).write_text(text)
        print(f"wrote {(OUT / name).relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
