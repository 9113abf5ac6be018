"""Operations written once: a *program* is a generator of SQL statements.

An operation that several statements make up (check a fence, then write; read,
then quarantine what failed its checksum) is written once as a generator: it
``yield``\\ s a statement ``(sql, args)`` and receives its :class:`Result` (rows
and row count), decides what to run next, and ``return``\\ s the operation's
value. The same program then runs on SQLite (synchronously, on the writer thread)
and on PostgreSQL (asynchronously, on a pooled connection): only the *driver*
differs, never the operation.

SQL is written with ``?`` placeholders. A comment ``/*pg:TEXT*/`` is TEXT on
PostgreSQL and stays a comment on SQLite (row locks such as ``FOR UPDATE SKIP
LOCKED``, which SQLite, with one writer at a time, has no use for).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Generator, Sequence
from typing import Any, TypeVar

__all__ = ["Program", "Result", "Stmt", "drive_sync", "is_one_write", "one_write", "pg_sql"]

T = TypeVar("T")
Stmt = tuple[str, Sequence[Any]]


@dataclasses.dataclass(slots=True)
class Result:
    """What a statement produced: its rows (empty for a write without RETURNING)
    and how many rows it changed."""

    rows: list[tuple[Any, ...]]
    rowcount: int

    def one(self) -> tuple[Any, ...] | None:
        """The first row, or None."""
        return self.rows[0] if self.rows else None


Program = Generator[Stmt, Result, T]
"""A generator yielding statements and returning the operation's value."""

_ONE_WRITE: set[Callable[..., Any]] = set()


def one_write(fn: Callable[..., Program[T]]) -> Callable[..., Program[T]]:
    """Mark ``fn`` as a *one-write* program: its first statement is its only write,
    whatever follows only reads (or raises), and running it again after it committed
    returns the same value -- it recognises its own write.

    Such a program needs no transaction block: alone in a group commit, the PostgreSQL
    kernel runs its first statement as a transaction of its own (it commits with its
    own answer: one round trip), and after a lost connection it runs it again instead of
    reporting an unknown outcome. SQLite runs it like any other program."""
    _ONE_WRITE.add(fn)
    return fn


def is_one_write(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` was marked with :func:`one_write`."""
    return fn in _ONE_WRITE


_PG_ONLY = re.compile(r"/\*pg:(.*?)\*/", re.DOTALL)
_pg_cache: dict[tuple[str, bool], str] = {}


def pg_sql(sql: str, with_args: bool) -> str:
    """The PostgreSQL spelling of ``sql``: ``?`` -> ``%s`` (literal ``%`` escaped when
    there are arguments) and ``/*pg:TEXT*/`` -> ``TEXT``."""
    key = (sql, with_args)
    text = _pg_cache.get(key)
    if text is None:
        text = _PG_ONLY.sub(r"\1", sql)
        if with_args:
            text = text.replace("%", "%%").replace("?", "%s")
        if len(_pg_cache) < 4096:
            _pg_cache[key] = text
    return text


def drive_sync(
    conn: Any,
    fn: Callable[..., Program[T]],
    args: Sequence[Any],
    *,
    postgres: bool = False,
) -> T:
    """Run a program to its end on a blocking connection -- sqlite3, or a psycopg
    ``Connection`` with ``postgres=True`` -- inside the caller's transaction."""
    program = fn(*args)
    try:
        sql, params = next(program)
        while True:
            if postgres:
                text = pg_sql(sql, bool(params))
                cur = conn.execute(text, tuple(params) if params else None)
            else:
                cur = conn.execute(sql, tuple(params))
            rows = cur.fetchall() if cur.description is not None else []
            sql, params = program.send(Result(rows, cur.rowcount))
    except StopIteration as stop:
        value: T = stop.value
        return value
    finally:
        program.close()
