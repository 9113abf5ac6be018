"""A LangGraph checkpoint saver on stalwart's store database.

:class:`StalwartSaver` is a ``BaseCheckpointSaver``: LangGraph keeps a thread's
checkpoints and pending writes in two tables of the app's store database (the
SQLite file or the PostgreSQL database the durable store uses), the ``langgraph``
component of the database kernel (:mod:`stalwart.db`). Its tables have their own
numbered migrations, run under the kernel's migration lock; on SQLite its writes
join the group commit of the writer thread the durable store already runs on the
file in this process (no second connection); on PostgreSQL its one connection is
reopened after a server restart. Every operation is written once, as a kernel
program, for both dialects.

Each row also says which stalwart task wrote it (``task``), so a task resumed after
a kill can drop what its interrupted attempt wrote before it replays the graph
(see :mod:`stalwart.adapters.langgraph._agent`). Used outside a task (a notebook,
``graph.get_state``), it is an ordinary persistent checkpointer.

Inside a task whose checkpoints share its store database (the default), the writes
are *lazy* (:data:`LAZY`): committed where a process kill cannot lose them but not
fsynced on their own; the task's next journal commit -- its next model or tool call,
or its end -- syncs them with it, in the same file (SQLite) or the same server's log
(PostgreSQL). A power loss before that can lose only checkpoints of an unfinished
task, which the resumed attempt drops and writes again anyway; a finished task's
checkpoints are on disk before its result is. At ``durability="full"`` this takes the
saver's fsyncs off every model call (7.8 fsynced commits per model call of the
support example become 5.3).

Channel versions are integers (``get_next_version`` of the base class), so a
replayed run computes the same versions as the run it replays.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_checkpoint_id,
    get_serializable_checkpoint_metadata,
)
from langgraph.checkpoint.serde.base import SerializerProtocol

from stalwart.db import BlockingDatabase, Component, Program, Result, blocking
from stalwart.errors import ConfigError

__all__ = ["COMPONENT", "LAZY", "WRITER", "StalwartSaver"]

_V1 = (
    """CREATE TABLE IF NOT EXISTS langgraph_checkpoints (
        thread_id TEXT NOT NULL, checkpoint_ns TEXT NOT NULL, checkpoint_id TEXT NOT NULL,
        parent_checkpoint_id TEXT, type TEXT NOT NULL, checkpoint {blob} NOT NULL,
        metadata_type TEXT NOT NULL, metadata {blob} NOT NULL, run_id TEXT, task TEXT,
        PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id))""",
    """CREATE TABLE IF NOT EXISTS langgraph_writes (
        thread_id TEXT NOT NULL, checkpoint_ns TEXT NOT NULL, checkpoint_id TEXT NOT NULL,
        task_id TEXT NOT NULL, idx INTEGER NOT NULL, channel TEXT NOT NULL,
        type TEXT NOT NULL, value {blob} NOT NULL, task_path TEXT NOT NULL, task TEXT,
        PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id, task_id, idx))""",
    "CREATE INDEX IF NOT EXISTS langgraph_checkpoints_task ON langgraph_checkpoints (task)",
    "CREATE INDEX IF NOT EXISTS langgraph_writes_task ON langgraph_writes (task)",
    "CREATE INDEX IF NOT EXISTS langgraph_checkpoints_run ON langgraph_checkpoints (run_id)",
)
COMPONENT = Component(
    "langgraph",
    (_V1,),
    create_hint="run a LangGraph agent once (`stalwart run`) against this database",
)
"""The saver's tables (created on first use)."""

WRITER: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "stalwart_langgraph_writer", default=None
)
"""The stalwart task whose graph run is writing (set by the adapter while it runs one)."""

LAZY: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "stalwart_langgraph_lazy", default=False
)
"""The writes of the run in progress need no fsync of their own (see the module docstring):
set by the adapter when the checkpoints live in the task's own store database."""

_COLUMNS = (
    "thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint, "
    "metadata_type, metadata"
)
_Row = tuple[Any, ...]
_Loaded = tuple[list[_Row], dict[tuple[str, str, str], list[_Row]]]


def _select(
    thread_id: str | None, ns: str | None, checkpoint_id: str | None, before: str | None,
    latest: bool,
) -> Program[_Loaded]:  # fmt: skip
    """Checkpoints (newest first) matching the filters, with their writes."""
    where, args = [], []
    for column, value, op in (
        ("thread_id", thread_id, "="),
        ("checkpoint_ns", ns, "="),
        ("checkpoint_id", checkpoint_id, "="),
        ("checkpoint_id", before, "<"),
    ):
        if value is not None:
            where.append(f"{column} {op} ?")
            args.append(value)
    sql = f"SELECT {_COLUMNS} FROM langgraph_checkpoints"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY checkpoint_id DESC"
    if latest:
        sql += " LIMIT 1"
    rows = (yield (sql, tuple(args))).rows
    writes: dict[tuple[str, str, str], list[_Row]] = {}
    for row in rows:
        key = (str(row[0]), str(row[1]), str(row[2]))
        found = yield (
            "SELECT task_id, channel, type, value, task_path, idx FROM langgraph_writes "
            "WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?",
            key,
        )
        writes[key] = found.rows
    return rows, writes


def _put(row: tuple[Any, ...], versions: list[tuple[str, Any]], task: str | None) -> Program[None]:
    yield (
        "INSERT INTO langgraph_checkpoints (thread_id, checkpoint_ns, checkpoint_id, "
        "parent_checkpoint_id, type, checkpoint, metadata_type, metadata, run_id, task) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id) DO UPDATE SET "
        "parent_checkpoint_id = excluded.parent_checkpoint_id, type = excluded.type, "
        "checkpoint = excluded.checkpoint, metadata_type = excluded.metadata_type, "
        "metadata = excluded.metadata, run_id = excluded.run_id, task = excluded.task",
        (*row, task),
    )


def _put_writes(rows: list[tuple[Any, ...]]) -> Program[None]:
    for row in rows:
        # a special write (error, interrupt: a negative index) replaces the earlier one;
        # a plain one, already stored, is kept
        conflict = (
            "DO UPDATE SET channel = excluded.channel, type = excluded.type, "
            "value = excluded.value, task_path = excluded.task_path, task = excluded.task"
            if row[4] < 0
            else "DO NOTHING"
        )
        yield (
            "INSERT INTO langgraph_writes (thread_id, checkpoint_ns, checkpoint_id, task_id, "
            "idx, channel, type, value, task_path, task) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            f"ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id, task_id, idx) {conflict}",
            row,
        )


def _delete(column: str, values: Sequence[str]) -> Program[int]:
    deleted = 0
    for value in values:
        for table in ("langgraph_checkpoints", "langgraph_writes"):
            result: Result = yield (f"DELETE FROM {table} WHERE {column} = ?", (value,))
            deleted += result.rowcount
    return deleted


def _delete_runs(run_ids: Sequence[str]) -> Program[int]:
    # the writes first: they are found through their checkpoints' run
    deleted = 0
    for run_id in run_ids:
        result: Result = yield (
            "DELETE FROM langgraph_writes WHERE EXISTS (SELECT 1 FROM langgraph_checkpoints c "
            "WHERE c.run_id = ? AND c.thread_id = langgraph_writes.thread_id AND "
            "c.checkpoint_ns = langgraph_writes.checkpoint_ns AND "
            "c.checkpoint_id = langgraph_writes.checkpoint_id)",
            (run_id,),
        )
        deleted += result.rowcount
        result = yield ("DELETE FROM langgraph_checkpoints WHERE run_id = ?", (run_id,))
        deleted += result.rowcount
    return deleted


def _copy(source: str, target: str) -> Program[None]:
    yield (
        "INSERT INTO langgraph_checkpoints (thread_id, checkpoint_ns, checkpoint_id, "
        "parent_checkpoint_id, type, checkpoint, metadata_type, metadata, run_id, task) "
        "SELECT ?, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint, "
        "metadata_type, metadata, run_id, task FROM langgraph_checkpoints WHERE thread_id = ? "
        "ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id) DO NOTHING",
        (target, source),
    )
    yield (
        "INSERT INTO langgraph_writes (thread_id, checkpoint_ns, checkpoint_id, task_id, idx, "
        "channel, type, value, task_path, task) SELECT ?, checkpoint_ns, checkpoint_id, "
        "task_id, idx, channel, type, value, task_path, task FROM langgraph_writes "
        "WHERE thread_id = ? "
        "ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id, task_id, idx) DO NOTHING",
        (target, source),
    )


def _prune(thread_ids: Sequence[str], keep_latest: bool) -> Program[None]:
    for thread_id in thread_ids:
        if not keep_latest:
            yield ("DELETE FROM langgraph_writes WHERE thread_id = ?", (thread_id,))
            yield ("DELETE FROM langgraph_checkpoints WHERE thread_id = ?", (thread_id,))
            continue
        # keep the newest checkpoint of each namespace, and its writes
        for table in ("langgraph_writes", "langgraph_checkpoints"):
            yield (
                f"DELETE FROM {table} WHERE thread_id = ? AND checkpoint_id < (SELECT "
                "MAX(c.checkpoint_id) FROM langgraph_checkpoints c WHERE c.thread_id = ? AND "
                f"c.checkpoint_ns = {table}.checkpoint_ns)",
                (thread_id, thread_id),
            )


def _latest_of(task: str, thread_id: str) -> Program[str | None]:
    row = (
        yield (
            "SELECT MAX(checkpoint_id) FROM langgraph_checkpoints "
            "WHERE task = ? AND thread_id = ? AND checkpoint_ns = ''",
            (task, thread_id),
        )
    ).one()
    return str(row[0]) if row and row[0] is not None else None


def _latest(thread_id: str) -> Program[str | None]:
    row = (
        yield (
            "SELECT MAX(checkpoint_id) FROM langgraph_checkpoints "
            "WHERE thread_id = ? AND checkpoint_ns = ''",
            (thread_id,),
        )
    ).one()
    return str(row[0]) if row and row[0] is not None else None


def _lazy(writer: str | None) -> bool:
    """A write of a task's run that its own next journal commit makes durable."""
    return writer is not None and LAZY.get()


def _bytes(value: Any) -> bytes:
    return bytes(value) if isinstance(value, memoryview | bytearray) else value


class StalwartSaver(BaseCheckpointSaver[int]):
    """LangGraph checkpoints in the store database at ``url`` (see the module docstring).

    ``url`` is a store URL (``sqlite:///path.db``, ``postgresql://...``). The tables
    are created on first use. The async methods run the blocking kernel in a worker
    thread, off the event loop.
    """

    def __init__(self, url: str, *, serde: SerializerProtocol | None = None) -> None:
        super().__init__(serde=serde)
        if "://" not in url:
            raise ConfigError(
                f"StalwartSaver needs a store URL (sqlite:///path.db or postgresql://...), "
                f"got {url!r}"
            )
        self.url = url
        self._db: BlockingDatabase = blocking(url, setting="the LangGraph saver's store URL")
        self._migrated = False
        self._lock = threading.Lock()

    def _run(self, fn: Any, *args: Any, lazy: bool = False) -> Any:
        if not self._migrated:
            with self._lock:
                if not self._migrated:
                    self._db.migrate(COMPONENT)
                    self._migrated = True
        return self._db.run(fn, *args, lazy=lazy)

    def close(self) -> None:
        self._db.close()

    # -- reading ----------------------------------------------------------------------------
    def _tuples(self, loaded: _Loaded) -> Iterator[tuple[CheckpointTuple, CheckpointMetadata]]:
        rows, writes = loaded
        for thread_id, ns, cid, parent, kind, blob, meta_kind, meta in rows:
            checkpoint: Checkpoint = self.serde.loads_typed((kind, _bytes(blob)))
            metadata: CheckpointMetadata = self.serde.loads_typed((meta_kind, _bytes(meta)))
            ordered = sorted(writes.get((thread_id, ns, cid), ()), key=lambda w: (w[4], w[0], w[5]))
            config: RunnableConfig = {
                "configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": cid}
            }
            parent_config: RunnableConfig | None = (
                {
                    "configurable": {
                        "thread_id": thread_id,
                        "checkpoint_ns": ns,
                        "checkpoint_id": parent,
                    }
                }
                if parent
                else None
            )
            yield (
                CheckpointTuple(
                    config=config,
                    checkpoint=checkpoint,
                    metadata=metadata,
                    parent_config=parent_config,
                    pending_writes=[
                        (str(task_id), str(channel), self.serde.loads_typed((t, _bytes(v))))
                        for task_id, channel, t, v, _path, _idx in ordered
                    ],
                ),
                metadata,
            )

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        conf = config["configurable"]
        checkpoint_id = get_checkpoint_id(config)
        loaded = self._run(
            _select, str(conf["thread_id"]), str(conf.get("checkpoint_ns", "")), checkpoint_id,
            None, checkpoint_id is None,
        )  # fmt: skip
        for found, _ in self._tuples(loaded):
            return found
        return None

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        conf = (config or {}).get("configurable", {})
        thread_id = conf.get("thread_id")
        ns = conf.get("checkpoint_ns")
        loaded = self._run(
            _select,
            None if thread_id is None else str(thread_id),
            None if ns is None else str(ns),
            get_checkpoint_id(config) if config else None,
            get_checkpoint_id(before) if before else None,
            False,
        )
        count = 0
        for found, metadata in self._tuples(loaded):
            if filter and not all(metadata.get(k) == v for k, v in filter.items()):
                continue
            if limit is not None and count >= limit:
                return
            count += 1
            yield found

    # -- writing ----------------------------------------------------------------------------
    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        conf = config["configurable"]
        thread_id = str(conf["thread_id"])
        ns = str(conf.get("checkpoint_ns", ""))
        kind, blob = self.serde.dumps_typed(checkpoint)
        meta = get_serializable_checkpoint_metadata(config, metadata)
        meta_kind, meta_blob = self.serde.dumps_typed(meta)
        run_id = meta.get("run_id")
        row = (
            thread_id, ns, checkpoint["id"], conf.get("checkpoint_id"), kind, blob,
            meta_kind, meta_blob, None if run_id is None else str(run_id),
        )  # fmt: skip
        writer = WRITER.get()
        self._run(_put, row, list(new_versions.items()), writer, lazy=_lazy(writer))
        return {
            "configurable": {
                "thread_id": thread_id,
                "checkpoint_ns": ns,
                "checkpoint_id": checkpoint["id"],
            }
        }

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        conf = config["configurable"]
        key = (str(conf["thread_id"]), str(conf.get("checkpoint_ns", "")), conf["checkpoint_id"])
        writer = WRITER.get()
        rows = []
        for idx, (channel, value) in enumerate(writes):
            kind, blob = self.serde.dumps_typed(value)
            index = WRITES_IDX_MAP.get(channel, idx)
            rows.append((*key, task_id, index, channel, kind, blob, task_path, writer))
        self._run(_put_writes, rows, lazy=_lazy(writer))

    def delete_thread(self, thread_id: str) -> None:
        self._run(_delete, "thread_id", [str(thread_id)])

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        self._run(_delete_runs, [str(r) for r in run_ids])

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        self._run(_copy, str(source_thread_id), str(target_thread_id))

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        if strategy not in ("keep_latest", "delete"):
            raise ConfigError(f"prune strategy must be 'keep_latest' or 'delete', not {strategy!r}")
        self._run(_prune, [str(t) for t in thread_ids], strategy == "keep_latest")

    # -- what the adapter needs ------------------------------------------------------------
    def forget_task(self, task: str) -> int:
        """Drop every checkpoint and write that stalwart task ``task`` wrote (an attempt
        that was cut off: the resumed attempt replays the graph and writes them again)."""
        return int(self._run(_delete, "task", [task]))

    def latest(self, thread_id: str, *, task: str | None = None) -> str | None:
        """The newest root checkpoint id of ``thread_id`` (written by ``task`` if given)."""
        if task is not None:
            return self._run(_latest_of, task, thread_id)  # type: ignore[no-any-return]
        return self._run(_latest, thread_id)  # type: ignore[no-any-return]

    # -- async: the same, off the event loop --------------------------------------------------
    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await asyncio.to_thread(self.get_tuple, config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        found = await asyncio.to_thread(
            lambda: list(self.list(config, filter=filter, before=before, limit=limit))
        )
        for item in found:
            yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        # copy the context: the writing task (WRITER) goes with the call into the thread
        return await asyncio.to_thread(self.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        await asyncio.to_thread(self.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        await asyncio.to_thread(self.delete_thread, thread_id)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await asyncio.to_thread(self.delete_for_runs, run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await asyncio.to_thread(self.copy_thread, source_thread_id, target_thread_id)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await asyncio.to_thread(self.prune, thread_ids, strategy=strategy)
