"""The text pool synthetic communities judge: real prompts and responses from the shared datasets.

The datasets are read by the same importers `cairn node import` uses (node/importers/), so a
format is parsed in one place only; the pool keeps nothing of a Record but its texts: the user
turn the responses answer and the distinct responses. Where the data is found is decided once,
by `default_data_dir()`, for `cairn node synth`, `cairn demo` and the benches.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from node.importers import FormatError, read_records
from node.schema import Record

DATA_ENV = "CAIRN_SHARED_DATA"
DATA_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz")
# Formats without contributor ids need one to parse; the pool keeps only texts, never this id.
POOL_CONTRIBUTOR = "synth-pool"
_REPO = Path(__file__).resolve().parents[2]


class SynthError(ValueError):
    """A synthetic community cannot be built as asked (no usable text, bad arguments)."""


@dataclass(frozen=True)
class TextGroup:
    """One real prompt and two or more real responses to it."""

    prompt: str
    responses: tuple[str, ...]


def default_data_dir() -> Path:
    """The shared datasets: $CAIRN_SHARED_DATA, else ../shared/data beside the repository."""
    return Path(os.environ.get(DATA_ENV) or _REPO.parent / "shared" / "data")


def _data_files(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """The data files under `paths` (files are taken as given, folders searched), sorted per folder."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(q for q in p.rglob("*") if q.is_file() and q.name.lower().endswith(DATA_SUFFIXES))
        elif p.is_file():
            files.append(p)
    return files


def _records(path: Path) -> Iterator[Record]:
    """The file's valid Records, in file order; a file no importer reads gives none."""
    try:
        for item in read_records(path, contributor=POOL_CONTRIBUTOR):
            if isinstance(item, tuple):
                yield item[1]
    except (FormatError, OSError):
        return


def load_text_pool(paths: Sequence[str | os.PathLike] | None = None, *, max_chars: int = 4000) -> list[TextGroup]:
    """Real (prompt, responses) groups from data files, merged by prompt.

    `paths`: data files or folders (default: `default_data_dir()`), read with node/importers (any
    format it detects). The prompt of a group is the last prompt turn (the user turn the responses
    answer). Texts are stripped and truncated to `max_chars`, responses deduplicated; groups with
    fewer than two distinct responses are dropped. Deterministic order.
    """
    paths = [default_data_dir()] if paths is None else paths
    missing = [str(p) for p in paths if not Path(p).exists()]
    if missing:
        raise SynthError(f"data not found: {', '.join(missing)} (pass --data DIR or set ${DATA_ENV})")
    merged: dict[str, list[str]] = {}
    for f in _data_files(paths):
        for rec in _records(f):
            if not rec.prompt:
                continue
            responses = merged.setdefault(rec.prompt[-1].text.strip()[:max_chars], [])
            for r in rec.responses:
                text = r.text.strip()[:max_chars]
                if text and text not in responses:
                    responses.append(text)
    return [TextGroup(p, tuple(rs)) for p, rs in merged.items() if p and len(rs) >= 2]


def split_pool(pool: Sequence[TextGroup], test_fraction: float = 0.25,
               salt: str = "cairn-synth") -> tuple[list[TextGroup], list[TextGroup]]:
    """(train, test) split by a hash of the prompt: no prompt is on both sides."""
    train, test = [], []
    for g in pool:
        h = int.from_bytes(hashlib.sha256((salt + "\x00" + g.prompt).encode()).digest()[:8], "big") / 2**64
        (test if h < test_fraction else train).append(g)
    return train, test
