"""Hooking the redactor into what the process writes: log records and events."""

from __future__ import annotations

from typing import Any

from stalwart.guard._redact import Redactor, default_redactor, tier_setting
from stalwart.observe import Event, EventBus, set_redactor

__all__ = ["RedactingEventBus", "install_redactor"]


def install_redactor(redactor: Redactor | None = None) -> Redactor:
    """Make every log line of this process pass ``redactor`` (default: the process one, on
    the tier ``STALWART_REDACT_LOGS`` names: ``fast`` unless set to ``accurate``)."""
    chosen = redactor or default_redactor().with_tier(tier_setting("STALWART_REDACT_LOGS"))
    # An agent process runs this same redactor (same tier, same patterns) on every line
    # it ships, so the node redacts a shipped line again only when it holds a value the
    # node knows and the agent may not have (the node learns the local vault's values).
    # A custom redactor may find what the default does not: then every line passes it.
    recheck = chosen.holds_known_value if redactor is None else None
    set_redactor(chosen.redact_record, recheck=recheck)
    return chosen


class RedactingEventBus(EventBus):
    """An :class:`EventBus` whose events carry redacted fields (kept, logged, delivered)."""

    def __init__(self, *, redactor: Redactor | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.redactor = redactor or default_redactor()

    def emit(self, name: str, **fields: Any) -> Event:
        """Emit ``name`` with its fields redacted (never blocked: an event must not vanish)."""
        clean = self.redactor.redact_data(fields, policy="redact")
        return super().emit(name, **clean)

    def notify(self, name: str, **fields: Any) -> Event:
        """:meth:`EventBus.notify` with the fields redacted."""
        clean = self.redactor.redact_data(fields, policy="redact")
        return super().notify(name, **clean)
