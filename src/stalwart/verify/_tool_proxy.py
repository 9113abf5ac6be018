"""Tools verified through a fault proxy (profile mode ``"proxy:<VAR>=<url>"`` or
``"proxy:<VAR>"``): the declarations checked, the proxies started, the variable set.

A tool in proxy mode runs its own function during verification and reaches its real
upstream through a :class:`~stalwart.chaos.FaultProxy` that verify starts in front of
it. The tool learns the proxy's address from the environment variable ``<VAR>`` the
profile names: verify sets it, for the node and the agent processes it starts, to the
upstream URL with the proxy's host and port (scheme, credentials, path and query
kept). The upstream is the URL in the profile, or ``<VAR>``'s value in the environment
verify runs in. Tools naming the same variable share one proxy (one dependency).

The fault proxy only forwards to loopback addresses, so an upstream elsewhere is a
precondition problem (preflight names the tool and the fix); so is one nothing listens
on, or a variable given no URL and not set.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import socket
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Protocol

from stalwart.agent import App
from stalwart.agent._profile import fault_mode, proxy_target
from stalwart.chaos import FaultProxy
from stalwart.chaos._proxy import LOOPBACK_HOSTS
from stalwart.errors import ConfigError
from stalwart.tools._verifying import PROXIED_ENV

__all__ = [
    "DoubleFault",
    "ProxyDecl",
    "ToolFault",
    "ToolProxies",
    "proxied_url",
    "proxy_decls",
    "upstream_listening",
]

DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclasses.dataclass(frozen=True, slots=True)
class ProxyDecl:
    """One tool's proxy declaration, resolved: the variable the tool reads, the upstream
    URL, its host and port; or, when it cannot be used, the problem and its fix."""

    tool: str
    var: str
    upstream: str
    from_env: bool
    host: str = ""
    port: int = 0
    problem: str = ""
    fix: str = ""

    @property
    def where(self) -> str:
        """Where the upstream came from, for the plan and the evidence."""
        return f"${self.var}" if self.from_env else "the profile"


def _other_modes(tool: str, var: str) -> str:
    return (
        f"tools = {{{tool} = 'proxy:{var}=http://127.0.0.1:<port>'}} with a service on this "
        f"machine, or give {tool} a double (@tool(double=fn)), or declare it 'none'"
    )


def _resolve(tool: str, arg: str, environ: Mapping[str, str]) -> ProxyDecl:
    var, url = proxy_target(arg)
    from_env = url is None
    if url is None:
        url = environ.get(var, "")
        if not url:
            return ProxyDecl(
                tool, var, "", True,
                problem=f"tool {tool!r} is verified through a fault proxy whose upstream is "
                f"${var}, and {var} is not set",
                fix=f"set {var} to the service's loopback URL before running verify, or write "
                f"it in the profile: tools = {{{tool} = 'proxy:{var}=http://127.0.0.1:<port>'}}",
            )  # fmt: skip
    parts = urllib.parse.urlsplit(url)
    host = (parts.hostname or "").lower()
    try:
        port = parts.port or DEFAULT_PORTS.get(parts.scheme.lower(), 0)
    except ValueError:
        port = 0
    if not parts.scheme or not host:
        return ProxyDecl(
            tool, var, url, from_env,
            problem=f"tool {tool!r}: the proxy upstream {url!r} (from {_src(var, from_env)}) "
            "is not a URL (scheme://host:port)",
            fix=_other_modes(tool, var),
        )  # fmt: skip
    if host not in LOOPBACK_HOSTS:
        return ProxyDecl(
            tool, var, url, from_env, host,
            problem=f"tool {tool!r}: the fault proxy only forwards to loopback addresses "
            f"({', '.join(LOOPBACK_HOSTS)}), and its upstream {url!r} (from "
            f"{_src(var, from_env)}) is on {host}",
            fix=_other_modes(tool, var),
        )  # fmt: skip
    if not port:
        return ProxyDecl(
            tool, var, url, from_env, host,
            problem=f"tool {tool!r}: the proxy upstream {url!r} names no port",
            fix=f"write the port: {parts.scheme}://{host}:<port>",
        )  # fmt: skip
    return ProxyDecl(tool, var, url, from_env, host, port)


def _src(var: str, from_env: bool) -> str:
    return f"${var}" if from_env else "the profile"


def proxy_decls(app: App, environ: Mapping[str, str] | None = None) -> dict[str, ProxyDecl]:
    """Per tool the profile puts behind a fault proxy, its declaration resolved against
    ``environ`` (default: this process's environment)."""
    env = os.environ if environ is None else environ
    out: dict[str, ProxyDecl] = {}
    for tool, value in sorted(app.verify.tools.items()):
        mode, arg = fault_mode(value)
        if mode == "proxy":
            out[tool] = _resolve(tool, arg, env)
    upstreams: dict[str, str] = {}
    for name, decl in out.items():  # one variable, one upstream
        first = upstreams.setdefault(decl.var, decl.upstream)
        if first != decl.upstream and not decl.problem:
            out[name] = dataclasses.replace(
                decl,
                problem=f"tool {name!r} reads ${decl.var} like another proxied tool, with "
                f"another upstream ({decl.upstream!r}, not {first!r})",
                fix="give tools that share a variable the same upstream, or each its own variable",
            )
    return out


def proxied_url(upstream: str, port: int) -> str:
    """``upstream`` with the proxy's host and port (scheme, credentials, path and query
    kept; ``localhost`` kept as the name, since a TLS client checks it)."""
    parts = urllib.parse.urlsplit(upstream)
    host = "localhost" if parts.hostname == "localhost" else "127.0.0.1"
    userinfo = parts.netloc.rpartition("@")[0] if "@" in parts.netloc else ""
    netloc = (f"{userinfo}@" if userinfo else "") + f"{host}:{port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def upstream_listening(decl: ProxyDecl, timeout: float = 1.0) -> bool:
    """Something accepts TCP connections at the upstream (blocking: call in a thread)."""
    try:
        with socket.create_connection((decl.host, decl.port), timeout=timeout):
            return True
    except OSError:
        return False


class ToolProxies:
    """The fault proxies of one verification: one per variable, its port bound at
    construction, so the variables are known before the node starts."""

    def __init__(self, decls: Mapping[str, ProxyDecl]) -> None:
        bad = [d.problem for d in decls.values() if d.problem]
        if bad:
            raise ConfigError("; ".join(bad))
        self.decls = dict(decls)
        self._by_var: dict[str, FaultProxy] = {}
        for decl in self.decls.values():
            if decl.var not in self._by_var:
                self._by_var[decl.var] = FaultProxy(decl.port, upstream_host=decl.host)

    @property
    def tools(self) -> list[str]:
        return sorted(self.decls)

    def proxy(self, tool: str) -> FaultProxy:
        return self._by_var[self.decls[tool].var]

    def environment(self) -> dict[str, str]:
        """What the node and its agents get: each variable pointed at its proxy, and the
        proxied tools named (their own functions run, not their doubles)."""
        env = {
            d.var: proxied_url(d.upstream, self._by_var[d.var].port) for d in self.decls.values()
        }
        env[PROXIED_ENV] = ",".join(self.tools)
        return env

    def describe(self, tool: str) -> dict[str, object]:
        """For the evidence: the upstream, where it came from, the proxy, its counters."""
        decl, proxy = self.decls[tool], self.proxy(tool)
        return {
            "upstream": decl.upstream,
            "upstream_from": decl.where,
            "variable": decl.var,
            "proxy": proxy.url,
            "proxy_stats": dict(proxy.stats),
        }

    async def start(self) -> None:
        for proxy in self._by_var.values():
            await proxy.start()

    async def stop(self) -> None:
        for proxy in self._by_var.values():
            await proxy.stop()


class ToolFault(Protocol):
    """Where verify faults one tool's dependency: the fault proxy in front of its upstream
    (a proxied tool), or the switch of its double (:class:`DoubleFault`). ``stats`` counts
    attempts (``connections``), those reset (``resets``) and held (``held``); ``accepted``
    their arrival times (seconds, for the spacing of retries)."""

    def set(self, *, latency_ms: float = 0.0, blackhole: bool = False, reset: bool = False) -> None:
        """Fault every attempt from now: reset it, or hold it unanswered (``blackhole``)."""

    def clear(self) -> None:
        """Stop faulting."""

    @property
    def stats(self) -> Mapping[str, int]:
        """The counters."""

    @property
    def accepted(self) -> Sequence[float]:
        """Each attempt's arrival time."""


class DoubleFault:
    """A tool's double faulted through verify's switch (stalwart.tools._verifying): the
    file ``<tools>/fault/<tool>`` says the fault, every attempt of the double adds a line
    ``<mode> <time>`` to ``<tools>/fault/<tool>.hits`` (``ok`` when unfaulted). A reset
    raises ``ConnectionResetError`` in the agent, as a dead service behind the double
    would; a black hole never answers, until the tool's timeout."""

    def __init__(self, tools_dir: pathlib.Path, tool: str) -> None:
        self.dir = tools_dir / "fault"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.tool = tool

    def set(self, *, latency_ms: float = 0.0, blackhole: bool = False, reset: bool = False) -> None:
        if latency_ms:
            raise ValueError("a double is not slowed: latency needs a fault proxy")
        mode = "reset" if reset else "hang" if blackhole else ""
        (self.dir / self.tool).write_text(mode)

    def clear(self) -> None:
        (self.dir / self.tool).unlink(missing_ok=True)

    def _hits(self) -> list[tuple[str, float]]:
        try:
            text = (self.dir / f"{self.tool}.hits").read_text()
        except FileNotFoundError:
            return []
        out: list[tuple[str, float]] = []
        for line in text.splitlines():
            mode, _, at = line.partition(" ")
            try:
                out.append((mode, float(at)))
            except ValueError:
                continue  # a line being written
        return out

    @property
    def stats(self) -> dict[str, int]:
        hits = self._hits()
        return {
            "connections": len(hits),
            "resets": sum(m == "reset" for m, _ in hits),
            "held": sum(m == "hang" for m, _ in hits),
        }

    @property
    def accepted(self) -> list[float]:
        return [at for _, at in self._hits()]

    def describe(self) -> dict[str, object]:
        """For the evidence: where the fault is applied, and its counters."""
        return {
            "faulted_at": f"its double, through verify's switch (tools/fault/{self.tool})",
            "double_stats": self.stats,
        }
