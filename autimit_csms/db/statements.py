"""Named SQL statements, loaded once from `queries.sql`.

Owns: parsing `-- name: foo` blocks into `SQL.foo`. Every statement the service
runs lives in that one file with `%(name)s` bound parameters; nothing builds SQL
from strings. A name that is used but missing fails at import of the caller's
first use, and `tests/db` checks every block parses and is referenced.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import MappingProxyType
from typing import Final

_NAME = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


class Statements:
    def __init__(self, text: str) -> None:
        parts = _NAME.split(text)
        found: dict[str, str] = {}
        for name, body in zip(parts[1::2], parts[2::2], strict=True):
            if name in found:
                raise ValueError(f"statement {name!r} defined twice")
            found[name] = body.strip().rstrip(";")
        self.by_name: Final = MappingProxyType(found)

    def __getattr__(self, name: str) -> str:
        try:
            return self.by_name[name]
        except KeyError:
            raise AttributeError(f"no statement named {name!r} in queries.sql") from None


SQL: Final = Statements((Path(__file__).with_name("queries.sql")).read_text())
