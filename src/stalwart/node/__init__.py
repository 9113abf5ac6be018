"""The node: a supervision tree with a lifecycle, readiness and an exit code."""

from stalwart.node._node import Node

__all__ = ["Node"]
