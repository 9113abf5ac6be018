"""Every ```python block in docs/*.md and the README runs, so the examples users copy stay true.

A page's blocks run in order in one fresh interpreter (a later block may use names
from an earlier one). A block whose first line is ``# doc: no-run`` is shown only.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def _pages() -> list[pathlib.Path]:
    pages = [*DOCS.rglob("*.md"), DOCS.parent / "README.md"]
    return sorted(p for p in pages if BLOCK.search(p.read_text()))


@pytest.mark.timeout(180)
@pytest.mark.parametrize("page", _pages(), ids=lambda p: p.name)
def test_doc_examples_run(page: pathlib.Path, tmp_path: pathlib.Path) -> None:
    blocks = [b for b in BLOCK.findall(page.read_text()) if not b.startswith("# doc: no-run")]
    script = tmp_path / f"{page.stem}_examples.py"
    script.write_text("\n\n".join(blocks))
    root = str(DOCS.parent)  # examples run as from the repository root (examples/ importable)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
    }
    proc = subprocess.run(
        [sys.executable, str(script)],
        env=env,
        check=False,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert proc.returncode == 0, f"{page.name} examples failed:\n{proc.stdout}\n{proc.stderr}"


@pytest.mark.timeout(120)
def test_the_docs_site_builds_with_no_warning(tmp_path: pathlib.Path) -> None:
    """`make docs`: mkdocs --strict turns a broken link, a missing anchor or a page left out
    of the nav into a failure."""
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
        cwd=DOCS.parent,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        check=False,
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    assert (tmp_path / "site" / "index.html").is_file()


SHELL_BLOCK = re.compile(r"^```bash\n(.*?)^```", re.S | re.M)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_tutorial_runs_as_written(tmp_path: pathlib.Path) -> None:
    """docs/tutorial.md: every shell block, in order, in one shell, in an empty folder, with
    this interpreter's `stalwart` first on PATH. Only the node's port is moved (to a free
    one, through the variables the tutorial's commands read) so runs do not collide."""
    import signal

    page = DOCS / "tutorial.md"
    blocks = SHELL_BLOCK.findall(page.read_text())
    assert len(blocks) >= 8
    opening = re.findall(r"^```(\S*)\n", page.read_text(), re.M)[0::2]  # open, close, ...
    assert set(opening) == {"bash"}, f"a tutorial block this test would not run: {opening}"
    script = tmp_path / "tutorial.sh"
    script.write_text("set -euo pipefail\n" + "\n".join(blocks))
    port = _free_port()
    bindir = str(pathlib.Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith("STALWART_")}  # a new user
    env.update({
        "PATH": os.pathsep.join([bindir, os.environ.get("PATH", "")]),
        "STALWART_HTTP_PORT": str(port),
        "STALWART_URL": f"http://127.0.0.1:{port}",
    })  # fmt: skip
    work = tmp_path / "work"
    work.mkdir()
    proc = subprocess.Popen(
        ["bash", str(script)], cwd=work, env=env, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        out, _ = proc.communicate(timeout=540)
    finally:
        try:  # the node it started in the background, if a block failed before stopping it
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    node_log = work / "shop" / "node.log"
    log_tail = node_log.read_text()[-4000:] if node_log.exists() else "(no node.log)"
    assert proc.returncode == 0, f"the tutorial failed:\n{out[-6000:]}\nnode.log:\n{log_tail}"
    assert "succeeded boxes: [0, 1, 2, 3, 4]" in out
    packed = (work / "shop" / "packing.log").read_text().splitlines()
    assert {line.split()[1] for line in packed} == {"0", "1", "2", "3", "4"}
    assert len({line.split()[-1] for line in packed}) == 2  # the killed process, its successor
    events = [json.loads(line) for line in node_log.read_text().splitlines() if line[:1] == "{"]
    exits = [e for e in events if e["event"] == "agent_exited" and e.get("agent") == "packer"]
    assert exits and exits[0]["signal"] == "SIGKILL"
    starts = [e["incarnation"] for e in events
              if e["event"] == "agent_started" and e.get("agent") == "packer"]  # fmt: skip
    assert starts[:2] == [1, 2]
    order = [e for e in events if e.get("task_id") == "order-7"]
    first = next(e["pid"] for e in order if e["event"] == "task_claimed")
    resumed = [e["pid"] for e in order if e["event"] == "task_resumed"]
    assert resumed and resumed[0] != first  # taken back by the new process


def test_the_generated_reference_pages_are_up_to_date(tmp_path: pathlib.Path) -> None:
    """docs/reference/cli.md and http-api.md are what the parsers and the OpenAPI document
    give now (`make reference` rewrites them)."""
    from stalwart.cli._reference import write_reference

    for fresh in write_reference(tmp_path):
        kept = DOCS / "reference" / fresh.name
        assert kept.read_text() == fresh.read_text(), f"{kept} is stale: run `make reference`"
    cli = (DOCS / "reference" / "cli.md").read_text()
    for command in ("## stalwart task submit", "## stalwart alerts export", "## stalwart init"):
        assert command in cli
    assert "## POST `/v1/tasks`" in (DOCS / "reference" / "http-api.md").read_text()


def test_every_environment_variable_is_in_the_settings_reference() -> None:
    src = DOCS.parent / "src" / "stalwart"
    read = {
        m.rstrip("_") + ("_<NAME>" if m.endswith("_") else "")
        for path in src.rglob("*.py")
        for m in re.findall(r"\bSTALWART_[A-Z0-9_]*[A-Z0-9_]", path.read_text())
    }
    page = (DOCS / "reference" / "settings.md").read_text()
    documented = set(re.findall(r"`(STALWART_[A-Z0-9_<>]+)`", page))
    for example in ("STALWART_SECRET_OPENAI_KEY",):  # examples of STALWART_SECRET_<NAME>
        read.discard(example)
        documented.discard(example)
    assert read <= documented, f"not in docs/reference/settings.md: {sorted(read - documented)}"
    assert documented <= read, f"documented but never read: {sorted(documented - read)}"


def test_every_app_field_and_toml_key_is_in_the_app_reference() -> None:
    """docs/reference/app.md names every field of the classes an app is made of and every
    key the TOML loader accepts (a field added without a line there fails here)."""
    import dataclasses

    from stalwart import App, LLMAgent, PythonAgent
    from stalwart.agent import _toml
    from stalwart.agent._profile import VerifyProfile
    from stalwart.guard import Budget, InputLimits, RateLimit, Security, TaintPolicy
    from stalwart.llm import Provider

    page = (DOCS / "reference" / "app.md").read_text()
    named = set(re.findall(r"`\[*([a-z0-9_]+)", page))  # `name`, `[table]`, `[[tables]]`
    classes = (App, LLMAgent, PythonAgent, VerifyProfile, Security, Budget, InputLimits,
               RateLimit, TaintPolicy, Provider)  # fmt: skip
    fields = {f"{c.__name__}.{f.name}" for c in classes for f in dataclasses.fields(c)}
    toml = {f"toml:{k}" for keys in (_toml._TOP, _toml._LLM, _toml._PY, _toml._SECURITY,
                                     _toml._VERIFY, _toml._MCP, _toml._MCP_TOOL,
                                     _toml._PROVIDER) for k in keys}  # fmt: skip
    missing = sorted(x for x in fields | toml if x.split(":")[-1].split(".")[-1] not in named)
    assert not missing, f"not in docs/reference/app.md: {missing}"
