"""The pgmq that hosted Supabase ships (1.4.4, or 1.5.1 on newer images), and checks that Brigade's SQL
calls only what both have.

No package on PyPI, npm or Debian carries those versions' SQL (the `pgmq` wheels bundle 1.11.1 and
1.13.0; the other clients bundle none), so the local stand-in installs the newer SQL of the `pgmq`
package. It has every function 1.4.4 and 1.5.1 have, with the same arguments, and dozens more; these
declarations — the signatures only, read from pgmq's `pgmq--1.4.4.sql` and its 1.4.4 → 1.5.0 → 1.5.1
upgrade scripts — are what keeps code from relying on the extra ones. `check_named_queries` asks
PostgreSQL itself to resolve every named query against stubs of the chosen version, so argument
types count (the retry once called a timestamptz overload neither hosted version has);
`calls_outside` checks every call in the migrations by name and argument count.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from brigade import queries
from brigade.errors import BrigadeError

SUPPORTED_VERSIONS = ("1.4.4", "1.5.1")

_MESSAGE = "msg_id bigint, read_ct integer, enqueued_at timestamptz, vt timestamptz, message jsonb"
_QUEUE = "queue_name varchar, is_partitioned boolean, is_unlogged boolean, created_at timestamptz"
_METRICS = ("queue_name text, queue_length bigint, newest_msg_age_sec integer, oldest_msg_age_sec integer, "
            "total_messages bigint, scrape_time timestamptz")

# One line per function: name(arguments, `= default` marking the defaulted ones) -> result.
_V1_4_4 = """
format_table_name(text, text) -> text
validate_queue_name(text) -> void
create(text) -> void
create_non_partitioned(text) -> void
create_unlogged(text) -> void
create_partitioned(text, text = '10000', text = '100000') -> void
convert_archive_partitioned(text, text = '10000', text = '100000', integer = 10) -> void
drop_queue(text, boolean = false) -> boolean
detach_archive(text) -> void
purge_queue(text) -> bigint
list_queues() -> setof queue_record
metrics(text) -> metrics_result
metrics_all() -> setof metrics_result
send(text, jsonb, integer = 0) -> setof bigint
send_batch(text, jsonb[], integer = 0) -> setof bigint
read(text, integer, integer) -> setof message_record
read_with_poll(text, integer, integer, integer = 5, integer = 100) -> setof message_record
pop(text) -> setof message_record
archive(text, bigint) -> boolean
archive(text, bigint[]) -> setof bigint
delete(text, bigint) -> boolean
delete(text, bigint[]) -> setof bigint
set_vt(text, bigint, integer) -> setof message_record
"""

# 1.5.0 folded the conditional read into read's fourth argument and gave drop_queue a one-argument
# form; 1.5.1 changed bodies only (clock_timestamp() in pop and set_vt).
_V1_5_1 = (_V1_4_4
           .replace("read(text, integer, integer) ->", "read(text, integer, integer, jsonb = '{}') ->")
           .replace("read_with_poll(text, integer, integer, integer = 5, integer = 100) ->",
                    "read_with_poll(text, integer, integer, integer = 5, integer = 100, jsonb = '{}') ->")
           .replace("drop_queue(text, boolean = false) -> boolean",
                    "drop_queue(text) -> boolean\ndrop_queue(text, boolean) -> boolean"))

_LINE = re.compile(r"^(?P<name>\w+)\((?P<args>.*)\) -> (?P<result>.+)$")
_CALL = re.compile(r"\bpgmq\.(?P<name>[a-z_][a-z0-9_]*)\s*\(")
_PARAM = re.compile(r"%\((?P<name>\w+)\)s")
CHECK_SCHEMA = "brigade_pgmq_check"


class PgmqSurfaceError(BrigadeError):
    code = "pgmq_surface"


@dataclass(frozen=True)
class Function:
    name: str
    args: tuple[str, ...]
    defaults: tuple[str | None, ...]
    result: str

    @property
    def arities(self) -> range:
        """Argument counts a call may use."""
        required = sum(1 for d in self.defaults if d is None)
        return range(required, len(self.args) + 1)

    def stub(self, schema: str) -> sql.Composed:
        """A stand-in with this signature that returns nothing (for resolving calls, never for running)."""
        params = sql.SQL(", ").join(
            sql.SQL(a if d is None else f"{a} default {d}") for a, d in zip(self.args, self.defaults))
        setof = self.result.startswith("setof ")
        result = self.result.removeprefix("setof ")
        if result in ("message_record", "queue_record", "metrics_result"):
            result = f"{schema}.{result}"
        body = "select" if result == "void" else f"select null::{result}" + (" where false" if setof else "")
        return sql.SQL("create function {}.{}({}) returns {}{} language sql as {}").format(
            sql.Identifier(schema), sql.Identifier(self.name), params,
            sql.SQL("setof " if setof else ""), sql.SQL(result), sql.Literal(body))


def _parse(text: str) -> tuple[Function, ...]:
    functions = []
    for line in text.strip().splitlines():
        match = _LINE.match(line.strip())
        assert match, line
        args, defaults = [], []
        for part in filter(None, (p.strip() for p in match["args"].split(","))):
            arg, _, default = part.partition(" = ")
            args.append(arg)
            defaults.append(default or None)
        functions.append(Function(match["name"], tuple(args), tuple(defaults), match["result"]))
    return tuple(functions)


HOSTED: dict[str, tuple[Function, ...]] = {"1.4.4": _parse(_V1_4_4), "1.5.1": _parse(_V1_5_1)}


def surface(version: str) -> tuple[Function, ...]:
    """The functions of one hosted pgmq version; raises for a version Brigade does not support."""
    if version not in HOSTED:
        raise PgmqSurfaceError(f"pgmq {version} is not a hosted version Brigade supports: {', '.join(SUPPORTED_VERSIONS)}")
    return HOSTED[version]


def common_call_forms() -> set[tuple[str, int]]:
    """(name, argument count) pairs every supported version accepts."""
    forms = [{(f.name, n) for f in fns for n in f.arities} for fns in HOSTED.values()]
    return set.intersection(*forms)


def _split_args(text: str, start: int) -> list[str] | None:
    """Top-level arguments of the call whose '(' is at start; None if the parentheses never close."""
    depth, args, current, quote = 0, [], "", False
    for ch in text[start:]:
        if quote:
            current += ch
            quote = ch != "'"
            continue
        if ch == "'":
            quote = True
        elif ch == "(":
            depth += 1
            if depth == 1:
                continue
        elif ch == ")":
            depth -= 1
            if depth == 0:
                args.append(current)
                return [a.strip() for a in args if a.strip()] or []
        elif ch == "," and depth == 1:
            args.append(current)
            current = ""
            continue
        current += ch
    return None


def calls(text: str) -> list[tuple[str, int]]:
    """Every pgmq function call in a piece of SQL, as (name, argument count)."""
    found = []
    for match in _CALL.finditer(text):
        args = _split_args(text, match.end() - 1)
        if args is not None:
            found.append((match["name"], len(args)))
    return found


def calls_outside(paths: Iterable[Path]) -> dict[str, list[tuple[str, int]]]:
    """Per file, the pgmq calls that some supported hosted version does not accept."""
    allowed = common_call_forms()
    outside: dict[str, list[tuple[str, int]]] = {}
    for path in paths:
        bad = [c for c in calls(path.read_text()) if c not in allowed]
        if bad:
            outside[str(path)] = bad
    return outside


def check_named_queries(conn: psycopg.Connection, version: str, texts: dict[str, str] | None = None) -> dict[str, str]:
    """Resolve every named query that calls pgmq against stubs of `version`; returns {name: error}.

    PostgreSQL plans each query (PREPARE) with its pgmq calls pointed at the stubs, so a call that
    needs an overload or argument type the version lacks fails here as it would on a hosted project.
    Runs in a transaction that is rolled back: nothing is left behind.
    """
    functions = surface(version)
    texts = queries.load() if texts is None else texts
    failures: dict[str, str] = {}
    with conn.transaction(force_rollback=True):
        schema = sql.Identifier(CHECK_SCHEMA)
        conn.execute(sql.SQL("create schema {}").format(schema))
        for type_name, columns in (("message_record", _MESSAGE), ("queue_record", _QUEUE), ("metrics_result", _METRICS)):
            conn.execute(sql.SQL("create type {}.{} as ({})").format(schema, sql.Identifier(type_name), sql.SQL(columns)))
        for function in functions:
            conn.execute(function.stub(CHECK_SCHEMA))
        for name, text in texts.items():
            if not _CALL.search(text):
                continue
            numbered: dict[str, int] = {}
            pointed = _CALL.sub(lambda m: f"{CHECK_SCHEMA}.{m['name']}(", text)
            pointed = _PARAM.sub(lambda m: f"${numbered.setdefault(m['name'], len(numbered) + 1)}", pointed)
            try:
                with conn.transaction():
                    conn.execute(sql.SQL("prepare brigade_pgmq_check as {}").format(sql.SQL(pointed)))  # type: ignore[arg-type]
                    conn.execute("deallocate brigade_pgmq_check")
            except psycopg.Error as exc:
                failures[name] = f"{exc.sqlstate}: {str(exc).splitlines()[0]}"
    return failures
