"""An app defined in a notebook cell (``__main__`` with no file) cannot run: each agent runs
in a process of its own that imports the app by reference. The node says so before it
starts anything, naming what to move, instead of agents failing to start."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from stalwart import App, PythonAgent, tool
from stalwart.errors import ConfigError
from stalwart.node._app import check_importable

CELL = textwrap.dedent(
    """
    from stalwart import App, PythonAgent
    from stalwart.node import app_node

    async def echo(ctx, x):
        return x

    app = App(agents=[PythonAgent(name="echo", fn=echo)], store="sqlite:///{db}")
    app_node("__main__:app")
    """
)


@pytest.mark.timeout(120)
def test_a_notebook_app_is_refused_with_what_to_do(tmp_path):
    # `python -c` is what a notebook kernel is to stalwart: a __main__ without a file
    proc = subprocess.run(
        [sys.executable, "-c", CELL.format(db=tmp_path / "nb.db")],
        capture_output=True, text=True, timeout=100, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("stalwart.errors.ConfigError: cannot start an app from __main__")
    for words in ("the app '__main__:app'", "the function of agent 'echo' (echo)",
                  "must live in an importable module", "app_node('myapp:app')"):  # fmt: skip
        assert words in last, last
    assert "agent_exited" not in proc.stderr  # refused before any agent was started
    assert not (tmp_path / "nb.db").exists()


async def _lookup(order_id: str) -> str:
    return order_id


async def _run(ctx: object, x: object) -> object:
    return x


def test_a_function_or_tool_from_main_is_named_and_a_module_app_passes():
    _run.__module__ = "__main__"  # as a function defined in a notebook cell is
    lookup = tool(_lookup)
    lookup.fn.__module__ = "__main__"
    try:
        app = App(agents=[PythonAgent(name="clerk", fn=_run, tools=[lookup])])
        with pytest.raises(ConfigError) as raised:
            check_importable("shop.app:app", app)
        message = str(raised.value)
        assert "the function of agent 'clerk' (_run)" in message
        assert "tool '_lookup' of agent 'clerk' (_lookup)" in message
        assert "'__main__" not in message.partition(":")[0]
    finally:
        _run.__module__ = __name__
        lookup.fn.__module__ = __name__
    check_importable("shop.app:app", App(agents=[PythonAgent(name="clerk", fn=_run)]))
    from stalwart.demo.app import app as demo

    check_importable("stalwart.demo.app:app", demo)
