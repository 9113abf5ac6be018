"""The JSON log pipeline (common fields, redactor hook, shipping) and log-query times.

The log store itself: tests/integration/server/test_logstore.py."""

from __future__ import annotations

import io
import json
import logging
import shutil
import subprocess

import pytest

from stalwart.observe import (
    COMMON_FIELDS,
    add_log_sink,
    configure_logging,
    default_rules,
    get_logger,
    ingest_line,
    ingest_redacted,
    log_context,
    parse_since,
    prometheus_rules,
    set_redactor,
)


@pytest.fixture
def stream():
    out = io.StringIO()
    configure_logging(stream=out, node="n1")
    yield out
    set_redactor(None)
    configure_logging()


def lines(out: io.StringIO) -> list[dict]:
    return [json.loads(x) for x in out.getvalue().splitlines()]


def test_every_line_has_the_common_fields_first(stream):
    log = get_logger("t")
    log.info("plain")
    with log_context(task_id="T1", trace_id="tr"):
        log.warning("in_task", step=3)
    try:
        raise KeyError("k")
    except KeyError:
        log.error("boom", exc_info=True)
    got = lines(stream)
    assert [list(x)[: len(COMMON_FIELDS)] for x in got] == [list(COMMON_FIELDS)] * 3
    assert got[0]["node"] == "n1" and got[0]["task_id"] is None and got[0]["logger"] == "t"
    assert (got[1]["task_id"], got[1]["trace_id"], got[1]["step"]) == ("T1", "tr", 3)
    assert got[2]["error_class"] == "KeyError" and "KeyError" in got[2]["exception"]


def test_the_redactor_sees_every_line_and_a_broken_one_leaks_nothing(stream):
    set_redactor(lambda r: {**r, "secret": "[redacted]"} if "secret" in r else r)
    get_logger("t").info("login", secret="hunter2")
    ingest_line(json.dumps({"event": "agent_line", "secret": "hunter3"}), agent_id="a")

    def broken(_r):
        raise RuntimeError

    set_redactor(broken)
    get_logger("t").info("login", secret="hunter4")
    text = stream.getvalue()
    assert "hunter" not in text
    got = lines(stream)
    assert got[1]["agent_id"] == "a" and got[1]["node"] == "n1"
    assert got[2]["event"] == "log_redactor_failed"


def test_ship_sends_lines_instead_of_printing():
    shipped: list[str] = []
    out = io.StringIO()
    configure_logging(stream=out, ship=shipped.append, agent_id="a")
    try:
        get_logger("t").info("hello")
    finally:
        configure_logging()
    assert out.getvalue() == ""
    assert json.loads(shipped[0])["agent_id"] == "a"


def test_unparseable_agent_line_is_kept_raw(stream):
    ingest_line("not json", agent_id="a")
    got = lines(stream)[0]
    assert got["event"] == "unparsed_log_line" and got["raw"] == "not json"


def test_sinks_get_records(stream):
    got = []
    remove = add_log_sink(lambda record, line: got.append(record["event"]))
    get_logger("t").info("one")
    remove()
    get_logger("t").info("two")
    assert got == ["one"]


def test_parse_since():
    assert parse_since("10m", now=1000.0) == 400.0
    assert parse_since("1970-01-01T00:01:00Z", now=0) == 60.0
    with pytest.raises(ValueError, match="duration"):
        parse_since("yesterday", now=0)


@pytest.mark.skipif(not shutil.which("promtool"), reason="needs promtool (Debian prometheus)")
def test_exported_rules_pass_promtool(tmp_path):
    path = tmp_path / "rules.yml"
    path.write_text(prometheus_rules(default_rules()))
    check = subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, timeout=30, check=False
    )
    assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()
    assert f"{2 * len(default_rules())} rules found".encode() in check.stdout  # warn + crit


def test_an_agent_line_names_the_node_that_ingests_it(stream):
    agent_line = {f: None for f in COMMON_FIELDS} | {"event": "task_started", "task_id": "T9"}
    ingest_line(json.dumps(agent_line), agent_id="resolver")
    got = lines(stream)[0]
    assert got["node"] == "n1"  # the agent rendered null; the node's context fills it
    assert (got["agent_id"], got["task_id"], got["step"]) == ("resolver", "T9", None)


def _shipped(**fields: object) -> str:
    """A line as an agent process renders and redacts it (``configure_logging(ship=)``)."""
    shipped: list[str] = []
    configure_logging(stream=io.StringIO(), ship=shipped.append, agent_id="a", pid=7)
    try:
        get_logger("agent").info("agent_step", **fields)
    finally:
        configure_logging()
    return shipped[0]


def test_a_shipped_line_is_rendered_once_more_and_not_redacted_again():
    line = _shipped(task_note="hello")
    out = io.StringIO()
    seen: list[dict] = []
    configure_logging(stream=out, node="n1")
    set_redactor(lambda r: seen.append(r) or r, recheck=lambda _line: False)
    got_sink: list[dict] = []
    remove = add_log_sink(lambda record, _line: got_sink.append(record))
    try:
        ingest_redacted(line, agent_id="resolver")
    finally:
        remove()
        set_redactor(None)
        configure_logging()
    assert seen == []  # the agent's redactor ran; the node's did not run again
    got = lines(out)
    assert len(got) == 1 and list(got[0])[: len(COMMON_FIELDS)] == list(COMMON_FIELDS)
    assert (got[0]["node"], got[0]["agent_id"], got[0]["pid"]) == ("n1", "a", 7)
    assert got[0]["event"] == "agent_step" and got[0]["task_note"] == "hello"
    assert got_sink == got


def test_a_shipped_line_the_recheck_flags_takes_the_whole_pipeline():
    line = _shipped(note="hunter5")
    out = io.StringIO()
    configure_logging(stream=out, node="n1")
    set_redactor(lambda r: {**r, "note": "[redacted]"}, recheck=lambda text: "hunter5" in text)
    try:
        ingest_redacted(line, agent_id="resolver")
        ingest_redacted("not json", agent_id="resolver")  # unparseable: kept raw, redacted
    finally:
        set_redactor(None)
        configure_logging()
    assert "hunter5" not in out.getvalue()
    got = lines(out)
    assert got[0]["note"] == "[redacted]" and got[0]["node"] == "n1"
    assert got[1]["event"] == "unparsed_log_line"


def test_a_shipped_line_below_the_node_level_is_dropped_and_console_mode_prints_it():
    line = _shipped(note="x")
    out = io.StringIO()
    configure_logging(stream=out, node="n1", level=logging.WARNING)
    try:
        ingest_redacted(line, agent_id="resolver")
    finally:
        configure_logging()
    assert out.getvalue() == ""
    people = io.StringIO()
    configure_logging(stream=people, node="n1", json=False)
    try:
        ingest_redacted(line, agent_id="resolver")
    finally:
        configure_logging()
    assert "agent_step" in people.getvalue() and not people.getvalue().startswith("{")


def test_a_shipped_line_to_a_closed_stream_is_dropped_without_raising():
    # a stream closed under the node (pytest's capture of an earlier test, a pipe whose
    # reader left): the line is lost, as logging's handlers lose it; raising ended the
    # node's reader of the agent's channel, and every later frame of that agent with it
    line = _shipped(note="x")
    out = io.StringIO()
    configure_logging(stream=out, node="n1")
    out.close()
    try:
        ingest_redacted(line, agent_id="resolver")  # must not raise
    finally:
        configure_logging()
