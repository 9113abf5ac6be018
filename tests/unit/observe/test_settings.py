"""ServerSettings: defaults, environment variables, and clear errors for bad values."""

from __future__ import annotations

import pytest

from stalwart.errors import ConfigError
from stalwart.server import ServerSettings


def test_defaults_are_loopback_and_safe():
    s = ServerSettings()
    assert (s.host, s.port, s.api_token, s.max_body_bytes) == ("127.0.0.1", 8470, None, 65536)
    assert s.health_timeout_s == 3.0 and s.alert_interval_s == 5.0


def test_from_env():
    s = ServerSettings.from_env(
        {
            "STALWART_HTTP_PORT": "0",
            "STALWART_API_TOKEN": "x" * 20,
            "STALWART_SMTP_TO": "a@x, b@x",
            "STALWART_SMTP_STARTTLS": "yes",
            "STALWART_ALERT_WEBHOOK_URL": "http://127.0.0.1:1/h",
        },
        host="0.0.0.0",
    )
    assert (s.port, s.host, s.smtp_to, s.smtp_starttls) == (0, "0.0.0.0", ("a@x", "b@x"), True)


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"port": 70000}, "port"),
        ({"api_token": "short"}, "api_token"),
        ({"max_body_bytes": 10}, "max_body_bytes"),
        ({"health_timeout_s": 0}, "health_timeout_s"),
    ],
)
def test_bad_values_name_the_setting(kwargs, word):
    with pytest.raises(ConfigError, match=word):
        ServerSettings(**kwargs)


def test_bad_env_number():
    with pytest.raises(ConfigError, match="STALWART_HTTP_PORT"):
        ServerSettings.from_env({"STALWART_HTTP_PORT": "eighty"})
