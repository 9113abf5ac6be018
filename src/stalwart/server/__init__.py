"""The node's HTTP side: probes, /metrics, the API, server-sent events, the dashboard,
the alert notifiers, and the log store. See ``docs/observability.md``."""

from stalwart.server._app import AppState, build_app
from stalwart.server._logstore import LogStore, search_logs
from stalwart.server._notify import (
    AlertmanagerNotifier,
    Dispatcher,
    Notifier,
    SlackNotifier,
    SmtpNotifier,
    WebhookNotifier,
    alertmanager_payload,
    webhook_payload,
)
from stalwart.server._openapi import openapi_spec
from stalwart.server._service import ObservabilityService, notifiers_from_settings
from stalwart.server._settings import ServerSettings

__all__ = [
    "AlertmanagerNotifier",
    "AppState",
    "Dispatcher",
    "LogStore",
    "Notifier",
    "ObservabilityService",
    "ServerSettings",
    "SlackNotifier",
    "SmtpNotifier",
    "WebhookNotifier",
    "alertmanager_payload",
    "build_app",
    "notifiers_from_settings",
    "openapi_spec",
    "search_logs",
    "webhook_payload",
]
