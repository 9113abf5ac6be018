"""The node: a supervision tree with a lifecycle, readiness and an exit code; apps on it."""

from stalwart.node._app import AppService, Tasks, app_node
from stalwart.node._control import CancelOutcome, TaskControl
from stalwart.node._node import Node, NodeService

__all__ = ["AppService", "CancelOutcome", "Node", "NodeService", "TaskControl", "Tasks", "app_node"]
