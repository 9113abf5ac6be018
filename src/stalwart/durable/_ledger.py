"""The idempotency ledger: side effects at most once, or exactly once with a key.

Protocol for one side-effect step at journal position ``seq``:

1. ``started`` is committed *before* the call (so a crash during the call is seen);
2. the effect runs with ``idempotency_key = "<task_id>:<seq>"``;
3. ``completed`` and the journal entry are committed together, atomically.

On replay: a journal entry answers (completed → the recorded result; unknown →
:class:`~stalwart.errors.OutcomeUnknown` again). Started but never completed:
if the service deduplicates on the key, call again with the same key (it
delivers at most once); otherwise do *not* call, emit
``durable.effect_outcome_unknown``, and ask the reconcile hook, if any; if it
cannot tell, record the outcome as unknown and raise ``OutcomeUnknown``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from stalwart.durable import _metrics
from stalwart.durable._integrity import check_json
from stalwart.durable._journal import call, describe, step_failed
from stalwart.durable._protocol import JournalEntry
from stalwart.errors import NonDeterminismError, OutcomeUnknown
from stalwart.guard import seal, unseal
from stalwart.observe import get_logger

if TYPE_CHECKING:
    from stalwart.durable._journal import Context

__all__ = ["NOT_DELIVERED", "effect_key", "run_effect"]


class _NotDelivered:
    """Type of :data:`NOT_DELIVERED`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NOT_DELIVERED"


NOT_DELIVERED = _NotDelivered()
"""What a reconcile hook returns when the service confirms the effect did *not*
happen: the effect is then called (once, with the same key). A hook returns the
effect's result when it did happen, and None when it cannot tell."""

_log = get_logger("stalwart.durable.ledger")
_OUTCOME = {
    k: _metrics.EFFECT_OUTCOMES.labels(outcome=k)
    for k in ("completed", "replayed", "retried", "reconciled", "unknown")
}


def effect_key(task_id: str, seq: int) -> str:
    """The idempotency key of the side effect at position ``seq`` of ``task_id``."""
    return f"{task_id}:{seq}"


async def run_effect(
    ctx: Context,
    *,
    seq: int,
    name: str,
    entry: JournalEntry | None,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    deduplicated: bool,
    reconcile: Callable[[str], Any] | None,
) -> Any:
    key = effect_key(ctx.task_id, seq)
    if entry is not None:
        _OUTCOME["replayed"].inc()
        value = entry.value
        if isinstance(value, dict) and value.get("status") == "completed":
            return value.get("result")
        if isinstance(value, dict) and value.get("status") == "failed":
            raise step_failed(name, value.get("result"))
        raise _unknown(ctx, key, name)
    record = ctx.effect_record(seq)
    if record is not None and record.name != name:
        raise NonDeterminismError(
            f"task {ctx.task_id!r}, journal position {seq}: the code now runs side effect "
            f"{name!r} but the ledger recorded {record.name!r} there"
        )
    if record is None:
        with ctx.writing():
            await ctx.store.effect_started(ctx.lease, key, seq, name)
        ctx.committed(lazy=False)
    elif record.status in ("completed", "failed"):
        # The journal entry was lost (damage) but the ledger kept the outcome.
        result = unseal(record.result)  # _finish seals it again
        await _finish(ctx, key, seq, name, status=record.status, result=result)
        _OUTCOME["replayed"].inc()
        if record.status == "failed":
            raise step_failed(name, record.result)
        return result
    elif deduplicated:
        _OUTCOME["retried"].inc()
        ctx.events.emit("durable.effect_retried", task_id=ctx.task_id, step=name, key=key)
    else:
        _OUTCOME["unknown"].inc()
        _log.warning("durable_effect_outcome_unknown", task_id=ctx.task_id, step=name, key=key)
        ctx.events.emit("durable.effect_outcome_unknown", task_id=ctx.task_id, step=name, key=key)
        if reconcile is not None:
            resolved = await call(reconcile, key)
            if resolved is NOT_DELIVERED:
                ctx.events.emit(
                    "durable.effect_reconciled",
                    task_id=ctx.task_id,
                    step=name,
                    key=key,
                    delivered=False,
                )
                _OUTCOME["reconciled"].inc()
                return await _call_and_finish(
                    ctx, key=key, seq=seq, name=name, fn=fn, args=args, kwargs=kwargs
                )
            if resolved is not None:
                check_json(resolved, f"reconcile result of side effect {name!r}")
                await _finish(ctx, key, seq, name, status="completed", result=resolved)
                _OUTCOME["reconciled"].inc()
                ctx.events.emit(
                    "durable.effect_reconciled",
                    task_id=ctx.task_id,
                    step=name,
                    key=key,
                    delivered=True,
                )
                return resolved
        await _finish(ctx, key, seq, name, status="unknown", result=None)
        raise _unknown(ctx, key, name)
    return await _call_and_finish(ctx, key=key, seq=seq, name=name, fn=fn, args=args, kwargs=kwargs)


async def _call_and_finish(
    ctx: Context,
    *,
    key: str,
    seq: int,
    name: str,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    try:
        result = await call(fn, *args, idempotency_key=key, **kwargs)
    except Exception as exc:
        # Journaled like a result so a replay raises the same StepFailed. (For a
        # non-deduplicating service an error such as a timeout may still hide a
        # delivery; the reconcile hook is the place to find out, not a blind retry.)
        error = describe(exc)
        await _finish(ctx, key, seq, name, status="failed", result=error)
        raise step_failed(name, error) from exc
    check_json(result, f"result of side effect {name!r} (task {ctx.task_id!r}, #{seq})")
    await _finish(ctx, key, seq, name, status="completed", result=result)
    _OUTCOME["completed"].inc()
    return result


async def _finish(ctx: Context, key: str, seq: int, name: str, *, status: Any, result: Any) -> None:
    result = seal(result)  # a resolved secret is stored as its reference (guard._sealed)
    value = {"status": status, "result": result, "key": key}
    with ctx.writing():
        await ctx.store.effect_finished(
            ctx.lease, key, status, result, JournalEntry(seq, "effect", name, value)
        )
    ctx.committed(lazy=False)
    ctx.count_executed("effect")


def _unknown(ctx: Context, key: str, name: str) -> OutcomeUnknown:
    if (name, key) not in ctx.unknown_effects:
        ctx.unknown_effects.append((name, key))
    return OutcomeUnknown(
        f"side effect {name!r} of task {ctx.task_id!r} (idempotency key {key!r}) was started "
        "but its outcome was never recorded, and it does not deduplicate on its key, so it "
        "was not repeated; check with the service whether it happened",
        key=key,
        step=name,
    )
