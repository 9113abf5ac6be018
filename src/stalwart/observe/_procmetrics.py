"""Per-agent-process resource metrics, read from the kernel at scrape time.

Agent processes are separate OS processes, so their CPU, memory, descriptors
and sockets are read by the node from ``/proc`` (through psutil) when
``/metrics`` is scraped; nothing runs in the agents for it and no file is
shared. A process that exits between listing and reading is skipped.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import psutil  # type: ignore[import-untyped]
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from stalwart.observe._metrics import REGISTRY

__all__ = ["ProcessSample", "ProcessCollector", "sample_process"]

ProcessSample = dict[str, float]


def sample_process(pid: int) -> ProcessSample | None:
    """CPU seconds, RSS bytes, open fds and sockets of ``pid``; None if it is gone."""
    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            cpu = proc.cpu_times()
            out: ProcessSample = {
                "cpu_seconds": float(cpu.user + cpu.system),
                "rss_bytes": float(proc.memory_info().rss),
                "open_fds": float(proc.num_fds()),
            }
            try:
                out["connections"] = float(len(proc.net_connections(kind="inet")))
            except (psutil.AccessDenied, OSError):
                out["connections"] = 0.0
            return out
    except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied, OSError):
        return None


class ProcessCollector(Collector):
    """Prometheus collector of :func:`sample_process` for each ``(agent, pid)`` listed.

    Series: ``stalwart_agent_cpu_seconds_total``, ``stalwart_agent_resident_memory_bytes``,
    ``stalwart_agent_open_fds``, ``stalwart_agent_connections``, labelled ``agent``.
    """

    def __init__(self, processes: Callable[[], Iterable[tuple[str, int]]]) -> None:
        self._processes = processes
        self._registered = False

    def describe(self) -> list[Any]:
        return []  # unchecked collector: series come and go with agents

    def collect(self) -> Iterator[Any]:
        cpu = CounterMetricFamily(
            "stalwart_agent_cpu_seconds", "CPU time of each agent process", labels=["agent"]
        )
        rss = GaugeMetricFamily(
            "stalwart_agent_resident_memory_bytes", "RSS of each agent process", labels=["agent"]
        )
        fds = GaugeMetricFamily(
            "stalwart_agent_open_fds", "Open file descriptors per agent process", labels=["agent"]
        )
        conns = GaugeMetricFamily(
            "stalwart_agent_connections", "Open inet sockets per agent process", labels=["agent"]
        )
        for agent, pid in list(self._processes()):
            sample = sample_process(pid)
            if sample is None:
                continue
            cpu.add_metric([agent], sample["cpu_seconds"])
            rss.add_metric([agent], sample["rss_bytes"])
            fds.add_metric([agent], sample["open_fds"])
            conns.add_metric([agent], sample["connections"])
        yield from (cpu, rss, fds, conns)

    def register(self) -> None:
        """Add to :data:`REGISTRY` (idempotent)."""
        if not self._registered:
            REGISTRY.register(self)
            self._registered = True

    def unregister(self) -> None:
        if self._registered:
            with contextlib.suppress(KeyError):
                REGISTRY.unregister(self)
            self._registered = False
