"""The start-up banner's text and the log format `stalwart run` picks (the banner on a real
terminal: tests/integration/cli/test_run_banner.py)."""

from __future__ import annotations

import io
import re

import pytest

from stalwart.cli._banner import Banner, log_format
from stalwart.errors import ConfigError
from stalwart.server import ObservabilityService, ServerSettings


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_store_url_is_shown_without_its_password():
    banner = Banner("app:app", ["a", "b"], "postgresql://ann:hunter2@db:5432/prod", None, None,
                    io.StringIO())  # fmt: skip
    text = banner.render("n1")
    assert "postgresql://ann@db:5432/prod" in text and "hunter2" not in text
    assert "off (--no-http)" in text and re.search(r"agents\s+a, b\n", text)


def test_the_token_is_named_never_shown():
    service = ObservabilityService(ServerSettings(api_token="secret://api-token"))
    text = Banner("app:app", [], None, service, None, io.StringIO()).render("n1")
    assert "required (from secret://api-token)" in text and "(none)" in text
    service = ObservabilityService(ServerSettings(api_token="a-literal-token-0123456789"))
    text = Banner("app:app", [], None, service, None, io.StringIO()).render("n1")
    assert "required (set)" in text and "a-literal-token" not in text


@pytest.mark.parametrize(
    ("flag", "env", "tty", "chosen"),
    [
        (None, None, True, "console"),
        (None, None, False, "json"),
        (None, "json", True, "json"),
        (None, "console", False, "console"),
        ("json", "console", True, "json"),  # the flag wins over the variable
    ],
)
def test_log_format(monkeypatch, flag, env, tty, chosen):
    if env is None:
        monkeypatch.delenv("STALWART_LOG_FORMAT", raising=False)
    else:
        monkeypatch.setenv("STALWART_LOG_FORMAT", env)
    assert log_format(flag, Tty() if tty else io.StringIO()) == chosen


def test_an_unknown_log_format_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("STALWART_LOG_FORMAT", "xml")
    with pytest.raises(ConfigError, match="STALWART_LOG_FORMAT='xml' is not one of auto"):
        log_format(None, io.StringIO())
