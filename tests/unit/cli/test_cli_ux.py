"""The CLI as people meet it: help on every option, `(none)` for empty lists, `--json`,
exit statuses that say how the asked-about task ended, agent names checked against the app,
thresholds written as people write them. Real stores (SQLite files), the real parsers."""

from __future__ import annotations

import asyncio
import json

import pytest

from stalwart.cli import main
from stalwart.cli._main import build_parser
from stalwart.cli._reference import option_rows, walk_parsers
from stalwart.cli._tasks import task_table
from stalwart.durable import Runner, SQLiteStore
from stalwart.server._cli import number


def test_every_command_and_argument_has_help():
    missing = []
    for path, parser, help_text in walk_parsers(build_parser()):
        if len(path) > 1 and not help_text:
            missing.append(" ".join(path))
        for action, name, _ in option_rows(parser):
            if not action.help:
                missing.append(f"{' '.join(path)} {name}")
    assert missing == []


def test_the_walk_reaches_nested_commands():
    paths = {" ".join(p) for p, _, _ in walk_parsers(build_parser())}
    assert {"stalwart task submit", "stalwart alerts export", "stalwart children restart"} <= paths


async def _tasks(path, outcomes):
    """Tasks in a real SQLite store, each run to the given end ("ok" or "boom")."""

    async def work(ctx, payload):
        if payload == "boom":
            raise ValueError("card declined")
        return {"answer": "done"}

    async with SQLiteStore(str(path)) as store:
        runner = Runner(store)
        for i, outcome in enumerate(outcomes):
            await runner.run(await runner.submit("clerk", outcome, task_id=f"t-{i}"), work)


def test_status_of_a_failed_task_exits_4_and_of_a_missing_one_1(tmp_path, capsys):
    db = tmp_path / "s.db"
    asyncio.run(_tasks(db, ["ok", "boom"]))
    capsys.readouterr()  # the runner's own log lines
    store = ["--store", f"sqlite:///{db}"]
    assert main(["task", "status", "t-0", *store]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "succeeded"
    assert main(["task", "status", "t-1", *store]) == 4
    out = capsys.readouterr()
    assert json.loads(out.out)["status"] == "failed" and "is failed" in out.err
    assert main(["task", "status", "t-9", *store]) == 1


def test_task_list_is_newest_first_with_an_agent_filter(tmp_path, capsys):
    db = tmp_path / "s.db"
    asyncio.run(_tasks(db, ["ok", "ok", "boom"]))
    capsys.readouterr()  # the runner's own log lines
    assert main(["task", "list", "--store", f"sqlite:///{db}", "--json"]) == 0
    ids = [json.loads(line)["id"] for line in capsys.readouterr().out.splitlines()]
    assert ids == ["t-2", "t-1", "t-0"]  # as GET /v1/tasks lists them
    assert main(["task", "list", "--store", f"sqlite:///{db}", "--agent", "nobody"]) == 0
    assert capsys.readouterr().out == ""  # piped: JSON lines, none


def test_the_task_table_for_a_terminal():
    assert task_table([]) == "(none)"
    table = task_table([
        {"id": "t-1", "agent": "clerk", "status": "succeeded", "attempts": 1,
         "outcome": {"answer": "Order #1042:\nshipped " + "x" * 80}},
        {"id": "t-22", "agent": "clerk", "status": "failed", "attempts": 3,
         "outcome": {"type": "ValueError", "message": "card declined"}},
    ])  # fmt: skip
    header, first, second = table.splitlines()
    assert header.split() == ["ID", "AGENT", "STATUS", "ATTEMPTS", "RESULT"]
    assert first.split()[:4] == ["t-1", "clerk", "succeeded", "1"]
    assert "Order #1042: shipped" in first and first.endswith("…")
    assert second.endswith("card declined")
    assert header.index("STATUS") == first.index("succeeded") == second.index("failed")


def test_submit_to_an_agent_the_app_lacks_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mini.toml").write_text(
        f'store = "sqlite:///{tmp_path}/m.db"\n'
        '[[agents]]\nname = "triage"\nkind = "python"\nfn = "examples.helpdesk.app:triage"\n'
    )
    code = main(["task", "submit", "triag", "{}", "--app", str(tmp_path / "mini.toml")])
    assert code == 2
    assert "no agent 'triag'; its agents: triage" in capsys.readouterr().err
    assert main(["task", "list", "--store", f"sqlite:///{tmp_path}/m.db"]) == 0
    assert capsys.readouterr().out == ""  # nothing was stored
    assert main(["task", "submit", "triage", "{}", "--app", str(tmp_path / "mini.toml")]) == 0
    assert json.loads(capsys.readouterr().out)["agent"] == "triage"


def test_empty_lists_say_none_and_json_says_empty(tmp_path, capsys):
    vault = ["--vault", str(tmp_path / "v.enc")]
    assert main(["secrets", "list", *vault]) == 0
    assert capsys.readouterr().out.strip() == "(none)"
    assert main(["secrets", "list", "--json", *vault]) == 0
    assert json.loads(capsys.readouterr().out) == []
    store = ["--store", f"sqlite:///{tmp_path}/a.db"]
    assert main(["approvals", "list", *store]) == 0
    assert capsys.readouterr().out.strip() == "(none)"
    assert main(["approvals", "list", "--json", *store]) == 0
    assert capsys.readouterr().out == ""


def test_alert_thresholds_print_as_people_write_them(capsys):
    assert [number(v) for v in (268435456.0, 0.05, 1.5, 3, 600.0)] == [
        "268435456", "0.05", "1.5", "3", "600"
    ]  # fmt: skip
    assert main(["alerts", "list"]) == 0
    text = capsys.readouterr().out
    assert "e+" not in text and "MemoryGrowth" in text
    assert main(["alerts", "list", "--json"]) == 0
    rules = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rules["RestartStorm"]["critical"]["value"] >= rules["RestartStorm"]["warning"]["value"]


@pytest.mark.parametrize("argv", [["models", "price", "openai:gpt-4o", "--json"]])
def test_json_output_parses(argv, capsys):
    assert main(argv) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["model"] == "openai:gpt-4o" and row["output_per_mtok"] > row["input_per_mtok"]
