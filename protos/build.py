"""Generate the Python code for protos/*.proto (`make protos`, or `python -m protos.build`).

The generated *_pb2.py files (and their *_pb2.pyi type stubs, which mypy reads) are committed so that a
fresh checkout imports them without a build;
`tests/test_protos.py` regenerates into a temporary folder and fails if anything drifted.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = Path(__file__).resolve().parent


def proto_files() -> list[Path]:
    """Every .proto in protos/, sorted."""
    return sorted(PROTO_DIR.glob("*.proto"))


def generate(out_dir: Path) -> list[Path]:
    """Compile every .proto into out_dir/protos/*_pb2.py and *_pb2.pyi; returns the generated files."""
    import grpc_tools
    from grpc_tools import protoc

    include = str(Path(grpc_tools.__file__).parent / "_proto")
    out_dir.mkdir(parents=True, exist_ok=True)
    args = ["protoc", f"-I{ROOT}", f"-I{include}", f"--python_out={out_dir}", f"--pyi_out={out_dir}"]
    args += [str(p.relative_to(ROOT)) for p in proto_files()]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed: " + " ".join(args))
    return sorted((out_dir / "protos").glob("*_pb2.py*"))


def main() -> int:
    """Regenerate the committed *_pb2.py next to their .proto files."""
    for f in generate(ROOT):
        print(f"generated {f.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
