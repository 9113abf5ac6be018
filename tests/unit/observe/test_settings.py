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


def test_api_security_defaults_and_env():
    s = ServerSettings()
    assert s.public_paths == ("/livez", "/readyz", "/metrics")
    assert (s.rate_limit_per_s, s.rate_limit_burst) == (20.0, 100)
    s = ServerSettings.from_env(
        {
            "STALWART_API_TOKEN": "secret://api-token",
            "STALWART_API_PUBLIC_PATHS": "/livez, /readyz,",
            "STALWART_API_RATE_LIMIT_PER_S": "2.5",
            "STALWART_API_RATE_BURST": "7",
        },
        host="0.0.0.0",
    )
    assert s.api_token == "secret://api-token"  # a reference: resolved per request
    assert s.public_paths == ("/livez", "/readyz")
    assert (s.rate_limit_per_s, s.rate_limit_burst) == (2.5, 7)
    assert ServerSettings.from_env({"STALWART_API_PUBLIC_PATHS": ""}).public_paths == ()


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "node.example", ""])
def test_a_reachable_host_without_a_token_fails_closed(host):
    with pytest.raises(ConfigError, match=r"set server\.api_token"):
        ServerSettings(host=host)
    assert ServerSettings(host=host, api_token="x" * 16).host == host


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_without_a_token_is_development(host):
    assert ServerSettings(host=host).api_token is None


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"api_token": "secret://9bad name"}, "api_token"),
        ({"rate_limit_per_s": 0}, "rate_limit_per_s"),
        ({"rate_limit_per_s": -1.0}, "rate_limit_per_s"),
        ({"rate_limit_per_s": float("inf")}, "rate_limit_per_s"),
        ({"rate_limit_per_s": float("nan")}, "rate_limit_per_s"),
        ({"rate_limit_burst": 0}, "rate_limit_burst"),
        ({"rate_limit_burst": 2.5}, "rate_limit_burst"),
        ({"public_paths": "/livez"}, "public_paths"),
        ({"public_paths": ("livez",)}, "public_paths"),
    ],
)
def test_bad_api_security_settings_name_the_setting(kwargs, word):
    with pytest.raises(ConfigError, match=word):
        ServerSettings(**kwargs)


def test_bad_rate_limit_env_names_the_variable():
    with pytest.raises(ConfigError, match="STALWART_API_RATE_BURST"):
        ServerSettings.from_env({"STALWART_API_RATE_BURST": "many"})
