from __future__ import annotations

from prometheus_client import CollectorRegistry

__all__ = ["REGISTRY"]

REGISTRY = CollectorRegistry(auto_describe=True)
"""The registry that holds every stalwart metric (served at ``/metrics``).

Each package defines its own metric objects against this registry in a private
``_metrics`` module; names start with ``stalwart_``.
"""
