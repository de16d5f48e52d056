"""Why a file could not be imported: errors that name the real cause (ARCHITECTURE.md invariant 9).

`detect_format` asks this module what to say when detection fails, so that a new operator is not
told "no readable JSON records" about a directory, an empty file, a Latin-1 or UTF-16 file or a
record over the size limit. Three cases:

- `file_problem(path)`: the path is not a readable file (missing, a directory, empty);
- `unreadable(path, errors)`: nothing could be read: the first reading errors (encoding with byte
  offset, record size, malformed JSON) are the cause;
- `nearest(path, obj, formats)`: records were read but no format recognised them: for the nearest
  formats (those whose parser used most of the record's fields before failing) it names the field
  that did not match and why.

Messages name fields and types, never record text (invariant 1).
"""

from __future__ import annotations

import os
from typing import Any

from node.importers.common import Context, Importer
from node.importers.reader import RecordError
from node.schema import SchemaError


def file_problem(path: str) -> str | None:
    """Why `path` cannot be read as a file at all (None when it can)."""
    if os.path.isdir(path):
        return f"{path}: a directory, not a file; import the files in it one by one"
    if not os.path.exists(path):
        return f"{path}: no such file"
    if not os.path.isfile(path):
        return f"{path}: not a regular file"
    if os.path.getsize(path) == 0:
        return f"{path}: the file is empty (0 bytes); nothing to import"
    return None


def unreadable(path: str, errors: list[RecordError]) -> str:
    """Detection read no record: say why, from the first reading errors."""
    if not errors:
        return f"{path}: the file holds no records (only blank lines); nothing to import"
    shown = "; ".join(str(e) for e in errors[:3])
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    return f"cannot detect the format of {path}: no record could be read: {shown}{more}"


class _Spy(dict):
    """A dict that remembers which of its (present) keys a parser looked at."""

    def __init__(self, *a: Any, **kw: Any):
        super().__init__(*a, **kw)
        self.used: list[str] = []

    def _note(self, k: Any) -> None:
        if k in self.keys() and k not in self.used:
            self.used.append(k)

    def __getitem__(self, k: Any) -> Any:
        self._note(k)
        return super().__getitem__(k)

    def get(self, k: Any, default: Any = None) -> Any:
        """dict.get, remembering the key."""
        self._note(k)
        return super().get(k, default)

    def __contains__(self, k: object) -> bool:
        self._note(k)
        return super().__contains__(k)


def _try(imp: Importer, obj: dict) -> tuple[int, str]:
    """(how many of the record's fields the parser used, why it failed or '' when it parsed)."""
    spy = _Spy(obj)
    try:
        for r in imp.parse(spy, Context(imp.name, "probe")):
            r.validate()
    except SchemaError as e:
        where = f"field '{e.field}': " if e.field else ""
        return len(spy.used), f"{where}{e}"
    except Exception as e:  # an importer's assumption about the shape failed
        return len(spy.used), f"unexpected structure ({type(e).__name__})"
    return len(spy.used), ""


def nearest(path: str, obj: dict, formats: dict[str, Importer], top: int = 3) -> str:
    """No format recognised the records: the nearest formats and the field that did not match."""
    keys = sorted(str(k)[:40] for k in obj)[:20]
    tried = []
    for name, imp in formats.items():
        if imp.parse_file is not None:  # formats spanning several objects are judged by their detector only
            continue
        used, why = _try(imp, obj)
        tried.append((used, name, why))
    tried.sort(key=lambda t: (-t[0], t[1]))
    near = [t for t in tried if t[0] > 0][:top]
    msg = f"cannot detect the format of {path}: no known format has records with keys {keys}"
    if near:
        parts = [f"{name} ({why})" if why else f"{name} (its fields parse: pass --format {name})" for _, name, why in near]
        msg += "; nearest: " + "; ".join(parts)
    return msg + f"; pass --format (one of {', '.join(formats)}), or for a CSV/TSV/Parquet table --map"
