"""Named SQL statements, loaded once from the `.sql` files of this package.

Owns: parsing `-- name: foo` blocks into `SQL.foo`. Every statement the service
runs lives in `db/*.sql` (queries.sql: writes and lookups of the charger and
provisioning paths; reads.sql: the history/read API; commands.sql: commands
and node ownership) with `%(name)s` bound parameters; nothing builds SQL from
strings. Names are unique across the files.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import MappingProxyType
from typing import Final

_NAME = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


class Statements:
    def __init__(self, *texts: str) -> None:
        found: dict[str, str] = {}
        for text in texts:
            parts = _NAME.split(text)
            for name, body in zip(parts[1::2], parts[2::2], strict=True):
                if name in found:
                    raise ValueError(f"statement {name!r} defined twice")
                found[name] = body.strip().rstrip(";")
        self.by_name: Final = MappingProxyType(found)

    def __getattr__(self, name: str) -> str:
        try:
            return self.by_name[name]
        except KeyError:
            raise AttributeError(f"no statement named {name!r} in db/*.sql") from None


SQL: Final = Statements(*(path.read_text()
                           for path in sorted(Path(__file__).parent.glob("*.sql"))))
