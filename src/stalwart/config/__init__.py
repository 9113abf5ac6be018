"""Settings with the checklist's defaults. Every value is validated when built;
a wrong one raises :class:`stalwart.errors.ConfigError` naming the setting."""

from stalwart.config._refs import load_instance, load_ref
from stalwart.config._runtime import RuntimeSettings
from stalwart.config._timeouts import TIMEOUT_RANGES, Timeouts

__all__ = ["RuntimeSettings", "TIMEOUT_RANGES", "Timeouts", "load_instance", "load_ref"]
