"""Suite-wide: tests marked ``bench`` are long runs that belong in ``make bench``.

``make test`` must stay well under 15 minutes on the 2-core machine; a test whose
evidence needs minutes of load, chaos or soak is marked ``@pytest.mark.bench`` and
runs when ``STALWART_SLOW=1`` (``make bench`` sets it).

Every test starts with no circuit breakers in the process-wide registry, nor their states
in its metrics: a test that makes a dependency fail (a webhook that refuses alerts) must
not leave its breaker open for whichever test the same xdist worker runs next; nor
operator orders (a breaker forced open over the HTTP API) in the node's shared override
file.
Likewise structlog's global configuration: ``structlog.testing.capture_logs()``
restores the processors it found but leaves structlog marked configured, so a later
in-process ``stalwart verify`` would not install the pipeline that feeds the node's
log store (SE-4 then found no ``budget_exceeded`` lines); a test that found
structlog unconfigured leaves it so.

The accurate redaction tier's model (spaCy's NER pipeline) is off
(``STALWART_NER_MODEL=none``) except in tests marked ``accurate_redaction``, which run with
the setting the suite was started with (by default: on). Every node's fork server loads
the model before it forks the agents, so that they share it: 1.4 s of CPU per node start,
and a full run started 301 nodes. Measured with process accounting over the whole suite
(2026-12-06, idle, 4521b6f): of 1,693 CPU-seconds, fork servers took 639 (2.1 s each).
The tests marked are those of the model itself, of the tier's boundaries (the node's
views, agents' outputs, canaries through every sink) and whole nodes on the defaults; the
other tests still redact, on the fast tier (patterns, checksums, gazetteer).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import pytest
import structlog

_NER_SETTING = os.environ.get("STALWART_NER_MODEL")  # what the suite was started with


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "accurate_redaction: runs with the NER model on (see tests/conftest.py)"
    )


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    # before any fixture of the test (a module's node is started by the first test's setup),
    # and for every test, so that no test's setting leaks into the next
    if item.get_closest_marker("accurate_redaction") is None:
        os.environ["STALWART_NER_MODEL"] = "none"
    elif _NER_SETTING is None:
        os.environ.pop("STALWART_NER_MODEL", None)
    else:
        os.environ["STALWART_NER_MODEL"] = _NER_SETTING


@pytest.fixture(autouse=True)
def _no_breakers_left_open() -> None:
    from stalwart.resilience import BREAKERS, OVERRIDES_ENV
    from stalwart.resilience._metrics import BREAKER_STATE

    BREAKERS.clear()  # breakers and operator overrides
    # and their states in this process's metrics, which any breaker of an in-process test
    # sets (its own BreakerRegistry's too): a node started here reads them as its agents'
    # ("sim:strong: circuit breaker open" in /readyz, a BreakerOpen alert at its start)
    BREAKER_STATE.clear()
    # a node of an earlier test shared its operator orders in this (default-named) file
    shared = os.environ.get(OVERRIDES_ENV)
    if shared and os.path.basename(shared).startswith("stalwart-breakers-"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(shared)


@pytest.fixture(autouse=True)
def _logging_left_as_found() -> Iterator[None]:
    was_configured = structlog.is_configured()
    yield
    if not was_configured:
        structlog.reset_defaults()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Modules with a test marked ``slow`` (tens of seconds each) go first, whole and in
    # their own order, so that pytest-xdist hands them out while every worker is busy (last,
    # one of them held one worker for a minute while the other had nothing left to run).
    # ``make test`` hands out one module at a time (--dist loadscope --no-loadscope-reorder):
    # the slow modules are shared between the workers, and a module's module-scoped
    # fixtures are made once (with only its slow tests first, the wheel test built its
    # wheel a second time for the test left behind).
    first = {item.path for item in items if item.get_closest_marker("slow") is not None}
    items.sort(key=lambda item: item.path not in first)
    if os.environ.get("STALWART_SLOW"):
        return
    skip = pytest.mark.skip(reason="a long run: set STALWART_SLOW=1 (make bench)")
    for item in items:
        if item.get_closest_marker("bench") is not None:
            item.add_marker(skip)
