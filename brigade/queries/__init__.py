"""Named SQL queries from brigade/queries/*.sql, loaded once.

A query starts with a line `-- name --`, then a one-line `-- description`, then its SQL with
`%(param)s` placeholders.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

_HEADER = re.compile(r"^-- (?P<name>[a-z_][a-z0-9_]*) --$", re.MULTILINE)


def parse(text: str) -> dict[str, str]:
    """Queries of one file by name."""
    parts = _HEADER.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2]):
        lines = [line for line in body.strip().splitlines() if not line.startswith("--")]
        queries[name] = "\n".join(lines).strip()
    return queries


@lru_cache
def load() -> dict[str, str]:
    """All named queries of the package."""
    queries: dict[str, str] = {}
    for path in sorted(Path(__file__).parent.glob("*.sql")):
        for name, sql in parse(path.read_text()).items():
            if name in queries:
                raise ValueError(f"query {name!r} is defined twice")
            queries[name] = sql
    return queries


def get(name: str) -> str:
    """One named query."""
    return load()[name]
