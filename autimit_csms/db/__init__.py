"""The data layer: the only package that imports psycopg.

database.py  pool, the Trio bridge, driver errors -> domain errors
statements.py + queries.sql  every statement, by name
writer.py    the group-commit writer for charger traffic
schema.py    applying schema.sql / timescale_policies.sql
"""

from .database import (
    ConstraintViolation,
    Database,
    DatabaseError,
    DatabaseUnavailable,
    Row,
    UnstorableValue,
    as_json,
)
from .statements import SQL

__all__ = [
    "SQL",
    "ConstraintViolation",
    "Database",
    "DatabaseError",
    "DatabaseUnavailable",
    "Row",
    "UnstorableValue",
    "as_json",
]
