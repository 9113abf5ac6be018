"""Checking a store and salvaging a damaged SQLite file (``stalwart store check|recover``).

A store that fails its integrity check is never replaced or emptied on its own:
the node refuses to start and names these commands. ``check`` reads only.
``recover`` copies every row it can still read into a NEW file (created with
the current schema), table by table -- scanning forwards, then backwards from
the other end when a damaged page stops the scan -- and reports, per table, how
many rows it copied and how many it could not read. The damaged file is left
as it was. The operator then points the node at the new file.
"""

from __future__ import annotations

import dataclasses
import pathlib
import sqlite3
from collections.abc import Sequence
from typing import Any

from stalwart.db import Component, SQLiteDatabase
from stalwart.durable._integrity import decode_record
from stalwart.errors import ConfigError, CorruptRecord, IncompatibleFormat, SchemaMissing

__all__ = [
    "CheckReport",
    "RecoverReport",
    "TableSalvage",
    "as_dict",
    "check_sqlite",
    "recover_sqlite",
]

# Tables worth salvaging, with the order a scan takes (rowid, or the primary key).
# (guard_held is derived from guard_reservations: left out, the new file's triggers count
# the reservation rows as they are copied, and a ledger's reconcile counts them again.)
_ORDER = {
    "stalwart_meta": "key",
    "stalwart_tasks": "id",
    "stalwart_journal": "task_id, seq",
    "stalwart_effects": "key",
    "stalwart_quarantine": "id",
    "stalwart_nodes": "id",
    "guard_spend": "scope, key, period",
    "guard_reservations": "id",
    "guard_approvals": "id",
}
# (table, columns, scope of the record's checksum) for the record sweep.
_RECORDS = (
    ("stalwart_tasks", "id, 0, input", "{}/input"),
    ("stalwart_journal", "task_id, seq, record", "{}"),
    ("stalwart_effects", "task_id, seq, record", "{}/effect"),
)


@dataclasses.dataclass(frozen=True, slots=True)
class CheckReport:
    """What ``stalwart store check`` found: ``sound`` is True only with no problem."""

    url: str
    sound: bool
    problems: list[str]
    rows: dict[str, int]
    bad_records: int


@dataclasses.dataclass(frozen=True, slots=True)
class TableSalvage:
    """One table's salvage: rows copied, rows the source said it had (None when even
    counting failed), and the read errors met."""

    table: str
    copied: int
    expected: int | None
    errors: list[str]

    @property
    def lost(self) -> int | None:
        return None if self.expected is None else max(0, self.expected - self.copied)


@dataclasses.dataclass(frozen=True, slots=True)
class RecoverReport:
    source: str
    target: str
    tables: list[TableSalvage]

    @property
    def complete(self) -> bool:
        """True when every table was read whole (nothing lost, nothing unknown)."""
        return all(t.lost == 0 and not t.errors for t in self.tables)


def _open_ro(path: pathlib.Path) -> sqlite3.Connection:
    # A raw read-only connection on purpose, beside the database kernel: the kernel
    # refuses a file that fails its integrity check (that is what brings the operator
    # here), and salvage must read a damaged file table by table, row range by row range.
    if not path.is_file():
        raise SchemaMissing(f"no SQLite store file at {path}: check the path")
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)


def _tables(conn: sqlite3.Connection) -> list[str]:
    try:
        found = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError:
        return list(_ORDER)  # the schema page itself is damaged: try every known table
    return [t for t in _ORDER if t in found]


def check_sqlite(path: pathlib.Path) -> CheckReport:
    """Read-only: SQLite's full ``integrity_check``, then every record's checksum."""
    url = f"sqlite:///{path}"
    conn = _open_ro(path)
    problems: list[str] = []
    rows: dict[str, int] = {}
    bad = 0
    try:
        try:
            result = [str(r[0]) for r in conn.execute("PRAGMA integrity_check(20)")]
        except sqlite3.DatabaseError as exc:
            return CheckReport(url, False, [f"not a readable SQLite database: {exc}"], {}, 0)
        if result != ["ok"]:
            problems.extend(f"integrity_check: {line}" for line in result)
        tables = _tables(conn)
        for table in tables:
            try:
                rows[table] = int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
            except sqlite3.DatabaseError as exc:
                problems.append(f"{table}: cannot be counted: {exc}")
        for table, columns, scope in _RECORDS:
            if table not in tables:
                continue
            try:
                for owner, position, record in conn.execute(f"SELECT {columns} FROM {table}"):
                    if record is None:
                        continue
                    try:
                        decode_record(scope.format(owner), int(position), record)
                    except IncompatibleFormat:
                        pass  # written by a newer stalwart: not damage
                    except CorruptRecord:
                        bad += 1
            except sqlite3.DatabaseError as exc:
                problems.append(f"{table}: cannot be read whole: {exc}")
        if bad:
            problems.append(f"{bad} record(s) fail their checksum (quarantined when read)")
        if "stalwart_tasks" not in tables:
            problems.append("no stalwart_tasks table: not a stalwart store")
    finally:
        conn.close()
    return CheckReport(url, not problems, problems, rows, bad)


def _columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [str(r[1]) for r in conn.execute(f"PRAGMA table_info({table})")]


def _scan(
    src: sqlite3.Connection, dst: sqlite3.Connection, table: str, cols: Sequence[str], desc: bool
) -> tuple[int, str | None]:
    """Copy rows until the end or the first unreadable page; (rows copied, error)."""
    order = ", ".join(f"{c} DESC" if desc else c for c in _ORDER[table].split(", "))
    names = ", ".join(cols)
    insert = f"INSERT OR IGNORE INTO {table} ({names}) VALUES ({', '.join('?' * len(cols))})"
    copied = 0
    try:
        for row in src.execute(f"SELECT {names} FROM {table} ORDER BY {order}"):
            copied += dst.execute(insert, row).rowcount
    except sqlite3.DatabaseError as exc:
        return copied, str(exc)
    return copied, None


def recover_sqlite(
    source: pathlib.Path, target: pathlib.Path, components: Sequence[Component]
) -> RecoverReport:
    """Salvage what is readable of ``source`` into the new file ``target``."""
    if target.exists():
        raise ConfigError(f"--to {target} already exists; name a new file (nothing was changed)")
    if target.resolve() == source.resolve():
        raise ConfigError("--to must name a new file, not the damaged one")
    src = _open_ro(source)
    db = SQLiteDatabase(target)
    db.open_blocking()
    try:
        for component in components:
            db.migrate_blocking(component)
    finally:
        db.close_blocking()
    # The new file's tables were created through the kernel (above); the rows are copied
    # on a raw connection in one transaction, beside the damaged source's raw reads.
    dst = sqlite3.connect(target, isolation_level=None)
    report: list[TableSalvage] = []
    try:
        dst.execute("BEGIN")
        for table in _tables(src):
            try:
                cols = [c for c in _columns(src, table) if c in set(_columns(dst, table))]
            except sqlite3.DatabaseError as exc:
                report.append(TableSalvage(table, 0, None, [f"columns unreadable: {exc}"]))
                continue
            if table == "stalwart_meta":  # the new file's versions are already current
                continue
            expected: int | None
            errors: list[str] = []
            try:
                expected = int(src.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
            except sqlite3.DatabaseError as exc:
                expected = None  # how many rows it had is unknown: say so
                errors.append(f"cannot be counted: {exc}")
            copied, error = _scan(src, dst, table, cols, desc=False)
            if error is not None:
                errors.append(error)
            if error is not None:  # read the rest from the other end
                more, error2 = _scan(src, dst, table, cols, desc=True)
                copied += more
                if error2 is not None:
                    errors.append(error2)
            report.append(TableSalvage(table, copied, expected, errors))
        dst.execute("COMMIT")
    finally:
        dst.close()
        src.close()
    return RecoverReport(f"sqlite:///{source}", f"sqlite:///{target}", report)


def as_dict(report: CheckReport | RecoverReport) -> dict[str, Any]:
    """A JSON-ready view of a report (for the CLI)."""
    if isinstance(report, CheckReport):
        return dataclasses.asdict(report)
    return {
        "source": report.source,
        "target": report.target,
        "complete": report.complete,
        "tables": [
            {"table": t.table, "copied": t.copied, "expected": t.expected, "lost": t.lost,
             "errors": t.errors}
            for t in report.tables
        ],
    }  # fmt: skip
