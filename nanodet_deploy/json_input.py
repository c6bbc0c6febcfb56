"""JSON that comes from files a user hands us (parity.json, bench JSON): untrusted input like an image.

``read_json`` reads only a regular file (a FIFO or a device would block or never end: files.open_regular), refuses it by its size
before reading a byte of it, and by its nesting depth after parsing. The schema classes check every field a
reader uses before it is used, so a wrong field is one line that names it ("artifacts[0].images: a whole
number, not str"), never a traceback from deep inside a template.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from .errors import UsageError
from .files import open_regular

# parity.json of an export gated on 79 val-dev images with the phone's 12 rows is ~60 KB, a bench JSON of a
# full 4-backend x 3-precision x 2-size run ~150 KB; 8 MiB leaves room and refuses the 1 GiB file that took 2.1 GB
# of memory to parse. Our documents nest 6 deep (artifacts[0].differing_images[0].reference[0].box).
MAX_JSON_BYTES = 8 << 20
MAX_JSON_DEPTH = 16
MAX_TEXT = 4096      # characters of one string field: paths and notes
MAX_ITEMS = 10000    # entries of one list


def read_json(path: Path, max_bytes: int = MAX_JSON_BYTES, max_depth: int = MAX_JSON_DEPTH):
    """The parsed JSON of ``path``: a regular file of at most ``max_bytes``, nested at most ``max_depth``
    deep. UsageError (one line naming the file) otherwise."""
    path = Path(path)
    try:
        with open_regular(path) as file:
            size = os.fstat(file.fileno()).st_size
            if size > max_bytes:
                raise UsageError(f"{path}: {size / 1e6:.1f} MB, over the {max_bytes >> 20} MiB a result JSON "
                                 f"may have")
            data = file.read(max_bytes + 1)  # the file may grow after fstat
    except OSError as e:
        raise UsageError(f"{path}: cannot be read ({e.strerror or e.__class__.__name__})") from None
    if len(data) > max_bytes:
        raise UsageError(f"{path}: over the {max_bytes >> 20} MiB a result JSON may have")
    try:
        document = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not JSON (not UTF-8 text)") from None
    except RecursionError:
        raise UsageError(f"{path}: nested more than {max_depth} levels deep") from None
    except json.JSONDecodeError as e:
        raise UsageError(f"{path}: not JSON ({e.msg} at line {e.lineno})") from None
    if depth(document, max_depth + 1) > max_depth:
        raise UsageError(f"{path}: nested more than {max_depth} levels deep")
    return document


def depth(value, limit: int) -> int:
    """Nesting depth of parsed JSON, counted without recursion and no further than ``limit``."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, (dict, list)):
            deepest = max(deepest, level)
            if level < limit:
                stack.extend((child, level + 1) for child in (node.values() if isinstance(node, dict) else node))
    return deepest


class SchemaError(ValueError):
    """A field of the wrong type or shape; ``str`` names it by its path in the document."""

    def __init__(self, where: str, problem: str):
        super().__init__(f"{where or 'the document'}: {problem}")


def _wrong(where: str, expected: str, value) -> SchemaError:
    return SchemaError(where, f"{expected} expected, not {_kind(value)}")


def _kind(value) -> str:
    return "null" if value is None else {bool: "true/false", dict: "an object", list: "a list", str: "text"}.get(
        type(value), type(value).__name__)


class Text:
    def check(self, value, where: str):
        if not isinstance(value, str) or len(value) > MAX_TEXT:
            raise _wrong(where, f"text of at most {MAX_TEXT} characters", value)
        return value


class Whole:
    def __init__(self, low: int = 0, high: int = 1 << 53):
        self.low, self.high = low, high

    def check(self, value, where: str):
        if isinstance(value, bool) or not isinstance(value, int) or not self.low <= value <= self.high:
            bounds = f"from {self.low} to {self.high}" if self.high < 1 << 53 else f">= {self.low}"
            raise _wrong(where, f"a whole number {bounds}", value)
        return value


class Number:
    """A number; unless ``finite``, also "nan" / "inf" / "-inf", which parity.json writes for a broken
    artifact's errors (and which a hand-written NaN literal becomes)."""

    def __init__(self, finite: bool = False):
        self.finite = finite

    def check(self, value, where: str):
        if not self.finite and isinstance(value, str) and value in ("nan", "inf", "-inf"):
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or self.finite and not math.isfinite(value):
            raise _wrong(where, "a finite number" if self.finite else "a number", value)
        return value if math.isfinite(value) else str(value)


class Flag:
    def check(self, value, where: str):
        if not isinstance(value, bool):
            raise _wrong(where, "true or false", value)
        return value


class Anything:
    """A field shown as it is (escaped by the template) or not read at all: only the size limits apply."""

    def check(self, value, where: str):
        return value


class Optional:
    def __init__(self, inner):
        self.inner = inner

    def check(self, value, where: str):
        return None if value is None else self.inner.check(value, where)


class ListOf:
    def __init__(self, item, low: int = 0, high: int = MAX_ITEMS):
        self.item, self.low, self.high = item, low, high

    def check(self, value, where: str):
        if not isinstance(value, list) or not self.low <= len(value) <= self.high:
            raise _wrong(where, f"a list of {self.low} to {self.high} entries", value)
        return [self.item.check(v, f"{where}[{i}]") for i, v in enumerate(value)]


class Record:
    """An object with ``fields`` (name -> kind; ``optional`` names may be absent); other keys are dropped, so
    a reader sees only checked fields."""

    def __init__(self, fields: dict, optional=()):
        self.fields, self.optional = fields, set(optional)

    def check(self, value, where: str):
        if not isinstance(value, dict):
            raise _wrong(where, "an object", value)
        checked = {}
        for name, kind in self.fields.items():
            path = f"{where}.{name}" if where else name
            if name not in value:
                if name in self.optional:
                    continue
                raise SchemaError(path, "missing")
            checked[name] = kind.check(value[name], path)
        return checked


class MapOf:
    """An object whose keys are free text and whose values are all of one kind."""

    def __init__(self, item):
        self.item = item

    def check(self, value, where: str):
        if not isinstance(value, dict) or len(value) > MAX_ITEMS:
            raise _wrong(where, f"an object of at most {MAX_ITEMS} fields", value)
        return {Text().check(k, where): self.item.check(v, f"{where}.{k}") for k, v in value.items()}


def checked(document, schema, path: Path):
    """``document`` through ``schema``: the checked copy, or UsageError naming ``path`` and the field."""
    try:
        return schema.check(document, "")
    except SchemaError as e:
        raise UsageError(f"{path}: {e}") from None
