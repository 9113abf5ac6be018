"""How a task carries its principal: an envelope around the input, stored with the task.

``wrap_input(input, principal)`` is what a submitter stores (the HTTP API's
``principal`` field, ``stalwart tasks submit --principal``, ``Tasks.submit(...,
principal=...)``); the agent's first act, :func:`~stalwart.agent` ``prepare_input``,
splits it again with :func:`split_input`. The envelope is journaled with the task (it
is the task's stored input), so a resumed task has the same principal; a hand-over
passes the caller's principal on. A submitted input that itself holds the envelope's
key is refused (:class:`~stalwart.errors.InputRejected`): nobody names a principal
from inside an input.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stalwart.errors import InputRejected
from stalwart.guard._authz import Principal

__all__ = ["PRINCIPAL_KEY", "check_no_principal", "split_input", "wrap_input"]

PRINCIPAL_KEY = "$principal"
INPUT_KEY = "$input"


def wrap_input(task_input: Any, principal: Principal | str | Mapping[str, Any] | None) -> Any:
    """The input as stored: unchanged without a principal, else the envelope."""
    check_no_principal(task_input)
    if principal is None:
        return task_input
    who = Principal.from_data(principal)
    return {PRINCIPAL_KEY: who.as_data(), INPUT_KEY: task_input}


def split_input(stored: Any) -> tuple[Principal | None, Any]:
    """``(principal, input)`` from a stored input (``(None, stored)`` if not an envelope)."""
    if (
        isinstance(stored, Mapping)
        and PRINCIPAL_KEY in stored
        and set(stored)
        <= {
            PRINCIPAL_KEY,
            INPUT_KEY,
        }
    ):
        return Principal.from_data(stored[PRINCIPAL_KEY]), stored.get(INPUT_KEY)
    return None, stored


def check_no_principal(task_input: Any) -> None:
    """Refuse an input that carries the principal envelope's key itself."""
    if isinstance(task_input, Mapping) and PRINCIPAL_KEY in task_input:
        raise InputRejected(
            f"the input holds the reserved key {PRINCIPAL_KEY!r}: give the task's principal "
            "with the submission's principal field, not inside its input"
        )
