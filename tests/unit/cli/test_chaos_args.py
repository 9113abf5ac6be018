"""`stalwart chaos|load|soak` take the app's own workload and entry agent by default."""

from __future__ import annotations

import argparse

import pytest

from stalwart.chaos import TargetConfig
from stalwart.cli._chaos import _target, add_chaos_commands


@pytest.mark.parametrize("command", ["chaos", "load", "soak"])
def test_no_inputs_or_agent_of_our_own_by_default(command):
    parser = argparse.ArgumentParser()
    add_chaos_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args([command, "--app", "examples.warehouse.app:app"])
    target = _target(args)
    assert isinstance(target, TargetConfig)
    # None: the app's workload (App.workload) and entry agent; the demo's tickets, the
    # old default, went to every app
    assert target.inputs is None and target.agent is None
