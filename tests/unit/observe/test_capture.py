"""print() and sys.stderr writes become agent_output log lines, whole lines, none lost."""

from __future__ import annotations

import io
import json
import sys

import structlog

from stalwart.observe import (
    LineWriter,
    add_log_sink,
    capture_std_streams,
    configure_logging,
    log_context,
)
from stalwart.observe._capture import MAX_LINE


def test_lines_are_logged_whole_with_their_task_and_the_rest_at_flush() -> None:
    configure_logging(stream=io.StringIO(), capture_stdlib=False)
    records: list[dict] = []
    remove = add_log_sink(lambda record, _line: records.append(record))
    restore = capture_std_streams()
    try:
        with log_context(task_id="t-1"):
            print("one", "two")
            print("partial", end="")
            print(" rest")
            sys.stderr.write("err line\nno newline yet")
            print("\n")  # blank lines carry nothing
            sys.stdout.write("x" * (MAX_LINE + 10))
    finally:
        restore()
        remove()
        structlog.reset_defaults()
    assert isinstance(sys.stdout, LineWriter) is False
    got = [(r["stream"], r["text"][:20], r["task_id"]) for r in records]
    assert got == [
        ("stdout", "one two", "t-1"),
        ("stdout", "partial rest", "t-1"),
        ("stderr", "err line", "t-1"),
        ("stdout", "x" * 20, "t-1"),  # cut at MAX_LINE
        ("stdout", "x" * 10, "t-1"),  # and the rest
        ("stderr", "no newline yet", None),
    ]
    assert [r["level"] for r in records] == ["info", "info", "warning", "info", "info", "warning"]


def test_a_failing_pipeline_writing_to_stderr_does_not_loop() -> None:
    fallback = io.StringIO()
    writer = LineWriter("stderr", fallback)
    configure_logging(stream=io.StringIO(), capture_stdlib=False)

    def printing_sink(_record: dict, line: str) -> None:
        writer.write(f"sink saw {json.loads(line)['event']}\n")  # re-entered: passed on

    remove = add_log_sink(printing_sink)
    try:
        writer.write("hello\n")
    finally:
        remove()
        structlog.reset_defaults()
    assert fallback.getvalue() == "sink saw agent_output\n"
    assert writer.lines == 1
