"""The ticket generator lives in the package: ``stalwart.demo.tickets`` (read it there)."""

from stalwart.demo.tickets import INJECTIONS, NAMES, generate

__all__ = ["INJECTIONS", "NAMES", "generate"]
