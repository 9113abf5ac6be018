"""Tools served over the Model Context Protocol, as stalwart tools. See docs/mcp.md.

An :class:`MCPServer` declares one MCP server (a command line run as a child
process over stdio, or a streamable-HTTP URL) and the tools of it the app uses,
each with the scopes the app assigns. Its :attr:`MCPServer.tools` are
:class:`~stalwart.tools.Tool` objects like any ``@tool``: an agent's tools list
takes them, the registry authorizes them by scope, ``Tool.invoke`` gives each
call its deadline and reports every outcome as a ``ToolResult``. What differs:

- the description and JSON schema the model sees come from the server (its
  ``tools/list``), refreshed at every (re)connection;
- one circuit breaker per server (``mcp:<server>``), shared by its tools: a
  dead server fails one breaker, not one per tool;
- the connection is owned: :meth:`MCPServer.start` opens it (an agent process
  does so when it starts), :meth:`MCPServer.stop` closes it; in between a
  background task it owns (and awaits on stop) keeps it up: a stdio child that
  died is started again, an HTTP session that broke is opened again, with
  backoff. While it is down the server's tools answer ``unavailable``.
- a tool the app marks ``side_effect=True`` goes through the idempotency
  ledger as a ``@tool(side_effect=True)`` does; its idempotency key is sent in
  the request's ``_meta`` (``stalwart/idempotency_key``) and, if the app names
  ``key_argument``, as that argument too.

The official ``mcp`` package (``pip install stalwart[mcp]``) is imported only
when a server connects, so ``import stalwart`` never needs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import sys
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, cast

from stalwart.clock import SYSTEM_CLOCK, Clock
from stalwart.errors import ConfigError, InvalidMessage, ToolServerError, ToolServerUnavailable
from stalwart.llm import ToolSpec
from stalwart.observe import EventBus, catalog, get_logger
from stalwart.resilience import (
    BREAKERS,
    DEFAULT_BREAKER,
    BreakerConfig,
    BreakerRegistry,
    Policy,
    RetryPolicy,
)
from stalwart.tools._tool import _TOOL_RETRY, KEY_PARAM, Tool, _Binding, _check_timeout

if TYPE_CHECKING:
    from mcp import ClientSession
    from mcp.types import RequestParamsMeta

__all__ = ["KEY_META", "MCPServer", "MCPTool", "MCPToolOptions", "servers_of"]

_log = get_logger("stalwart.tools")

KEY_META = "stalwart/idempotency_key"
"""The ``_meta`` key a side-effect call's idempotency key is sent under."""

State = Literal["stopped", "connecting", "connected", "down"]


@dataclasses.dataclass(frozen=True)
class MCPToolOptions:
    """What the app says about one tool of an MCP server (the server says the rest).

    scopes
        Scopes an agent needs to call it (none: any agent offered it may).
    side_effect
        It changes the world: its calls go through the idempotency ledger (at most
        once, or exactly once with ``deduplicates``) and the taint policy treats it
        as sensitive.
    key_argument
        The tool's argument that takes the idempotency key (hidden from the model).
    deduplicates
        The server dedupes on ``key_argument``: a call interrupted mid-way is made
        again with the same key on resume, and retried on transient failures.
    timeout
        Seconds per call (5-30; None: the server's ``timeout``).
    record
        Its results are facts from a system of record: list the tool in the agent's
        ``TaintPolicy(record_tools=server.record_tools)`` to trust them; otherwise
        they are untrusted tool output.
    alternatives
        Tools the model may use instead while this one is unavailable.
    description
        Replaces the server's description (the model reads it).
    retry
        Retries of a read tool (a side-effect tool is retried only with ``deduplicates``).
    double
        Runs instead of the server while ``stalwart verify`` runs the app (same
        arguments, and ``idempotency_key`` for a side effect), as ``@tool(double=...)``.
    """

    scopes: Sequence[str] = ()
    side_effect: bool = False
    key_argument: str | None = None
    deduplicates: bool = False
    timeout: float | None = None
    record: bool = False
    alternatives: Sequence[str] = ()
    description: str | None = None
    retry: RetryPolicy | None = _TOOL_RETRY
    double: Callable[..., Any] | None = None

    def __post_init__(self) -> None:
        if self.double is not None and not callable(self.double):
            raise ConfigError(f"MCPToolOptions.double must be a function, got {self.double!r}")
        if isinstance(self.scopes, str):
            raise ConfigError("MCPToolOptions.scopes is a list of scope names, not one string")
        if self.deduplicates and not (self.side_effect and self.key_argument):
            raise ConfigError(
                "MCPToolOptions(deduplicates=True) needs side_effect=True and the key_argument "
                "the server dedupes on"
            )


async def _unbound(**_kwargs: Any) -> Any:  # pragma: no cover - replaced in __post_init__
    raise AssertionError("an MCPTool calls its server")


@dataclasses.dataclass(eq=False)
class MCPTool(Tool):
    """A tool of an :class:`MCPServer` (built by it; see the module docstring)."""

    server: MCPServer | None = None
    remote: str = ""
    """The tool's name on the server (``name`` is it with the server's prefix)."""
    key_argument: str | None = None
    record: bool = False

    def __post_init__(self) -> None:
        self.timeout = _check_timeout(self.name, self.timeout)
        if self.server is None or not self.remote:
            raise ConfigError(f"MCP tool {self.name!r} needs its server and remote name")
        self.fn = self._send
        self._spec: ToolSpec | None = None
        self._is_async = True
        self._takes_key = self.side_effect
        if self.side_effect and not self.deduplicates:
            self.retry = None  # without dedup on the key, a retry could deliver twice
        self._bindings: dict[int, _Binding] = {}
        self._listed: tuple[str, dict[str, Any]] | None = None
        self._validator: Any = None

    # -- what the model sees ------------------------------------------------------------
    def _absorb(self, description: str, schema: Mapping[str, Any]) -> None:
        """The server's listing of this tool (at each connection)."""
        shown: dict[str, Any] = dict(schema) if schema else {"type": "object"}
        if self.key_argument:  # the runtime supplies the key, never the model
            props = dict(shown.get("properties") or {})
            props.pop(self.key_argument, None)
            shown["properties"] = props
            if isinstance(shown.get("required"), list):
                shown["required"] = [r for r in shown["required"] if r != self.key_argument]
        shown.pop("title", None)
        listed = (description, shown)
        if listed != self._listed:
            self._listed = listed
            self._spec = None
            self._validator = None

    @property
    def spec(self) -> ToolSpec:
        """The server's description and input schema (before the first connection: the
        app's description and any JSON object)."""
        if self._spec is None:
            if self._listed is None:
                self._spec = ToolSpec(self.name, self.description, {"type": "object"})
            else:
                description, schema = self._listed
                self._spec = ToolSpec(self.name, self.description or description, schema)
        return self._spec

    def validate(self, arguments: Any) -> dict[str, Any]:
        """The arguments checked against the server's input schema (when it is known)."""
        if not isinstance(arguments, dict):
            raise InvalidMessage(f"arguments of {self.name!r} must be a JSON object")
        args = {k: v for k, v in arguments.items() if k not in (KEY_PARAM, self.key_argument)}
        if self._listed is None:
            return args  # not listed yet: the server checks them (or is unavailable)
        if self._validator is None:
            import jsonschema  # type: ignore[import-untyped]  # a dependency of mcp

            schema = self._listed[1]
            self._validator = jsonschema.validators.validator_for(schema)(schema)
        problems = sorted(
            f"{'.'.join(map(str, e.absolute_path)) or 'arguments'}: {e.message}"
            for e in self._validator.iter_errors(args)
        )
        if problems:
            raise InvalidMessage(f"invalid arguments for {self.name!r}: {'; '.join(problems)}")
        return args

    # -- the call -------------------------------------------------------------------------
    def _binding(
        self, events: EventBus | None, clock: Clock, breakers: BreakerRegistry | None
    ) -> _Binding:
        binding = self._bindings.get(id(breakers))
        if binding is None or binding.breakers is not breakers:
            assert self.server is not None
            breaker = None
            if self.server.breaker is not None:
                breaker = (breakers if breakers is not None else BREAKERS).get(
                    self.server.breaker_name, self.server.breaker, clock=clock, events=events
                )
            policy = Policy(
                f"tool:{self.name}",
                timeout=self.timeout,
                retry=self.retry,
                breaker=breaker,
                registry=breakers,
                events=events,
                clock=clock,
            )
            binding = self._bindings[id(breakers)] = _Binding(breakers, policy)
        return binding

    async def _send(self, **kwargs: Any) -> Any:
        assert self.server is not None
        key = kwargs.pop(KEY_PARAM, None)
        if key is not None and self.key_argument:
            kwargs[self.key_argument] = key
        return await self.server.call(self.remote, kwargs, key=key, timeout=self.timeout)


@dataclasses.dataclass(frozen=True)
class _Listed:
    name: str
    description: str
    schema: dict[str, Any]


class MCPServer:
    """One MCP server and the tools of it the app uses (see the module docstring).

    name
        The server's name in logs, errors and its breaker (``mcp:<name>``).
    command / url
        Exactly one: the command line of a stdio server (started as a child
        process, started again when it dies), or the URL of a streamable-HTTP one.
    tools
        The tools the app uses, by their name on the server: a list of names, or a
        mapping of name to :class:`MCPToolOptions`. A tool the server offers but
        this does not name is not offered to any agent.
    prefix
        Put before each tool's name (``"notes_"``: ``notes_read``) so two servers'
        tools cannot clash.
    env / cwd
        A stdio server's extra environment variables and working directory.
    headers
        An HTTP server's request headers (``Authorization`` ...).
    timeout
        Default seconds per tool call (5-30; a tool's ``MCPToolOptions.timeout`` wins).
    connect_timeout
        Seconds to start (or reach) the server and list its tools.
    breaker
        The server's circuit breaker settings (None: no breaker).
    reconnect_min / reconnect_max
        The backoff between attempts to connect again (full jitter, doubling).
    ping_interval
        Seconds between liveness pings while connected (a dead server is noticed by
        then, or at once by the next call).
    clock
        Measures how long the server was down (tests pass a fake clock).
    """

    def __init__(
        self,
        name: str,
        *,
        command: Sequence[str] | None = None,
        url: str | None = None,
        tools: Mapping[str, MCPToolOptions] | Sequence[str] = (),
        prefix: str = "",
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 15.0,
        connect_timeout: float = 10.0,
        breaker: BreakerConfig | None = DEFAULT_BREAKER,
        reconnect_min: float = 0.2,
        reconnect_max: float = 10.0,
        ping_interval: float = 5.0,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if not name or not isinstance(name, str):
            raise ConfigError("an MCPServer needs a name")
        if (command is None) == (url is None):
            raise ConfigError(f"MCP server {name!r}: give exactly one of command= and url=")
        if command is not None and (isinstance(command, str) or not command):
            raise ConfigError(
                f"MCP server {name!r}: command is the argument list, e.g. "
                "['python', '-m', 'my_server']"
            )
        if url is not None and not url.startswith(("http://", "https://")):
            raise ConfigError(f"MCP server {name!r}: url {url!r} is not an http(s) URL")
        spans = {"connect_timeout": connect_timeout, "ping_interval": ping_interval,
                 "reconnect_min": reconnect_min, "reconnect_max": reconnect_max}  # fmt: skip
        for what, value in spans.items():
            if not isinstance(value, int | float) or not 0 < value <= 3600:
                raise ConfigError(f"MCP server {name!r}: {what} must be in (0, 3600] seconds")
        self.name = name
        self.command = tuple(command) if command is not None else None
        self.url = url
        self.env = dict(env or {})
        self.cwd = cwd
        self.headers = dict(headers or {})
        self.timeout = timeout
        self.connect_timeout = float(connect_timeout)
        self.breaker = breaker
        self.reconnect_min = float(reconnect_min)
        self.reconnect_max = float(reconnect_max)
        self.ping_interval = float(ping_interval)
        self.clock = clock
        options = (
            dict(tools)
            if isinstance(tools, Mapping)
            else {t: MCPToolOptions() for t in tools}  # a list of names
        )
        if not options:
            raise ConfigError(
                f"MCP server {name!r}: name the tools the app uses (tools=['a', 'b'] or a "
                "mapping to MCPToolOptions); a tool the server adds later is not offered"
            )
        self.tools: tuple[MCPTool, ...] = tuple(
            self._tool(remote, opts, prefix) for remote, opts in options.items()
        )
        self._by_remote = {t.remote: t for t in self.tools}
        self.state: State = "stopped"
        self.why = "not started"
        """Why the server is not connected (the last error), for errors and logs."""
        self.connections = 0
        """Connections made so far (the first, then each reconnection)."""
        self._session: ClientSession | None = None
        self._down_since: float | None = None
        self._runner: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._suspect = asyncio.Event()
        self._changed = asyncio.Event()

    def _tool(self, remote: str, opts: MCPToolOptions, prefix: str) -> MCPTool:
        if not isinstance(opts, MCPToolOptions):
            raise ConfigError(f"MCP server {self.name!r}: tool {remote!r} needs MCPToolOptions")
        return MCPTool(
            fn=_unbound,
            name=f"{prefix}{remote}",
            description=opts.description or "",
            scopes=frozenset(opts.scopes),
            timeout=opts.timeout if opts.timeout is not None else self.timeout,
            side_effect=opts.side_effect,
            deduplicates=opts.deduplicates,
            alternatives=tuple(opts.alternatives),
            retry=opts.retry,
            breaker=None,  # the server's breaker, shared by its tools (MCPTool._binding)
            server=self,
            remote=remote,
            key_argument=opts.key_argument,
            record=opts.record,
            double=opts.double,
        )

    def __repr__(self) -> str:
        where = " ".join(self.command) if self.command else self.url
        return f"MCPServer({self.name!r}, {where!r}, state={self.state!r})"

    @property
    def breaker_name(self) -> str:
        return f"mcp:{self.name}"

    @property
    def record_tools(self) -> tuple[str, ...]:
        """The names of the tools marked ``record`` (for ``TaintPolicy.record_tools``)."""
        return tuple(t.name for t in self.tools if t.record)

    @property
    def connected(self) -> bool:
        return self._session is not None

    # -- lifecycle --------------------------------------------------------------------------
    async def __aenter__(self) -> MCPServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self, *, wait: bool = True) -> None:
        """Open the connection, kept up by a task this server owns until :meth:`stop`.

        With ``wait`` (the default) this returns once the first attempt ended,
        within ``connect_timeout``: connected, or down (its tools then answer
        ``unavailable`` while it keeps trying; it does not raise).
        """
        if self._runner is not None:
            raise ConfigError(f"MCP server {self.name!r} is already started")
        self._stopping = asyncio.Event()
        self._suspect = asyncio.Event()
        self._changed = asyncio.Event()
        self.state = "connecting"
        self._runner = asyncio.create_task(self._keep_up(), name=f"mcp:{self.name}")
        if wait:
            with contextlib.suppress(TimeoutError):
                await self.wait_connected(self.connect_timeout + 1.0, attempts=1)

    async def stop(self, timeout: float = 10.0) -> None:
        """Close the connection (a stdio child is asked to exit, then killed) and wait
        for the owning task to end, at most ``timeout`` seconds."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self._stopping.set()
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(runner)
        except BaseException as exc:  # out of time, or this stop was cancelled: end it now
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
            if not isinstance(exc, TimeoutError):
                raise
        finally:
            self.state = "stopped"
            self.why = "stopped"

    async def wait_connected(self, timeout: float, *, attempts: int | None = None) -> bool:
        """Wait until connected (True), or for ``attempts`` more attempts to end (False).

        Raises TimeoutError after ``timeout`` seconds.
        """
        async with asyncio.timeout(timeout):
            ended = 0
            while self._session is None:
                if attempts is not None and ended >= attempts:
                    return False
                self._changed.clear()
                await self._changed.wait()
                ended += 1
            return True

    async def _keep_up(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                await self._connect_once()
                failures = 0
            except Exception as exc:  # every failure to connect or stay connected
                failures += 1
                self.why = _describe(exc)
                self._degraded(True)
                _log.warning(
                    "tool_server_down", server=self.name, error=self.why, failures=failures
                )
            finally:
                self._session = None
            if self._stopping.is_set():
                break
            self.state = "down"
            self._changed.set()
            cap = min(self.reconnect_max, self.reconnect_min * 2 ** min(failures, 16))
            delay = random.uniform(self.reconnect_min, max(self.reconnect_min, cap))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stopping.wait()
            self.state = "connecting"

    async def _connect_once(self) -> None:
        """Connect, list the tools, then hold the connection until it fails or we stop."""
        from mcp import ClientSession

        async with contextlib.AsyncExitStack() as stack:
            read, write = await stack.enter_async_context(self._transport())
            session = await stack.enter_async_context(ClientSession(read, write))
            async with asyncio.timeout(self.connect_timeout):
                await session.initialize()
                listed = await _list_tools(session)
            self._absorb(listed)
            self._session = session
            self.connections += 1
            self.state = "connected"
            self.why = ""
            self._degraded(False)
            self._suspect.clear()
            self._changed.set()
            _log.info("tool_server_connected", server=self.name, connections=self.connections)
            try:
                await self._watch(session)
            finally:  # no call may use it while it closes (a stdio child takes a while)
                self._session = None

    def _degraded(self, down: bool) -> None:
        """``stalwart_degraded{component="mcp:<name>"}`` while the server is down, and the
        seconds it lasted (``stalwart_degradation_seconds``) once it is back."""
        component = self.breaker_name
        now = self.clock.monotonic()
        if down and self._down_since is None:
            self._down_since = now
            catalog.DEGRADED.labels(component).set(1)
            catalog.DEGRADATION_EVENTS.labels(component, "tool_server_down").inc()
        elif not down and self._down_since is not None:
            catalog.DEGRADATION_SECONDS.labels(component).inc(now - self._down_since)
            catalog.DEGRADED.labels(component).set(0)
            self._down_since = None

    def _transport(self) -> contextlib.AbstractAsyncContextManager[Any]:
        if self.command is not None:
            from mcp import StdioServerParameters, stdio_client

            params = StdioServerParameters(
                command=self.command[0], args=list(self.command[1:]), env=self.env or None,
                cwd=self.cwd,
            )  # fmt: skip
            return stdio_client(params, errlog=sys.stderr)
        assert self.url is not None
        return _http(self.url, self.headers)

    def _absorb(self, listed: list[_Listed]) -> None:
        offered = {t.name: t for t in listed}
        missing = sorted(set(self._by_remote) - set(offered))
        if missing:
            _log.warning(
                "tool_server_tools_missing", server=self.name, missing=missing,
                offered=sorted(offered),
            )  # fmt: skip
        for remote, tool in self._by_remote.items():
            found = offered.get(remote)
            if found is not None:
                tool._absorb(found.description, found.schema)

    async def _watch(self, session: ClientSession) -> None:
        """Return when the server stops answering (a ping fails) or we stop."""
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.ping_interval):
                    stopping = asyncio.ensure_future(self._stopping.wait())
                    suspect = asyncio.ensure_future(self._suspect.wait())
                    try:
                        await asyncio.wait({stopping, suspect}, return_when="FIRST_COMPLETED")
                    finally:
                        stopping.cancel()
                        suspect.cancel()
                        await asyncio.gather(stopping, suspect, return_exceptions=True)
            if self._stopping.is_set():
                return
            self._suspect.clear()
            async with asyncio.timeout(min(self.connect_timeout, 5.0)):
                await session.send_ping()  # raises when the server is gone

    # -- calls ------------------------------------------------------------------------------
    async def call(
        self, remote: str, arguments: dict[str, Any], *, key: str | None, timeout: float
    ) -> Any:
        """Call tool ``remote`` once, within ``timeout``; its result as JSON data.

        Raises :class:`~stalwart.errors.ToolServerUnavailable` when the server is not
        connected or the connection broke mid-call, :class:`~stalwart.errors.ToolServerError`
        when the tool answered with an error.
        """
        import anyio
        from mcp import MCPError

        session = self._session
        if session is None:
            raise ToolServerUnavailable(self._down_message(), dependency=self.name)
        meta = cast("RequestParamsMeta", {KEY_META: key}) if key else None
        try:
            async with asyncio.timeout(timeout):
                result = await session.call_tool(remote, arguments, meta=meta)
        except MCPError as exc:
            if exc.error.code == _CONNECTION_CLOSED:
                self._lost(str(exc))
                raise ToolServerUnavailable(self._down_message(), dependency=self.name) from None
            raise ToolServerError(
                f"MCP server {self.name!r} refused {remote!r}: {exc.error.message}",
                dependency=self.name,
            ) from None
        except (OSError, EOFError, anyio.ClosedResourceError, anyio.BrokenResourceError,
                anyio.EndOfStream) as exc:  # fmt: skip
            self._lost(_describe(exc))
            raise ToolServerUnavailable(self._down_message(), dependency=self.name) from None
        if result.is_error:
            raise ToolServerError(
                f"{remote} failed on MCP server {self.name!r}: {_text(result.content)[:500]}",
                dependency=self.name,
            )
        if result.structured_content is not None:
            return result.structured_content
        return _content(result.content)

    def _lost(self, why: str) -> None:
        """A call saw the connection break: check it now rather than at the next ping."""
        self.why = why
        self._suspect.set()

    def _down_message(self) -> str:
        if self._runner is None:
            return (
                f"MCP server {self.name!r} is not started: an agent process starts the "
                "servers of its tools; elsewhere use `async with server:` (or start())"
            )
        where = "its command " + " ".join(self.command) if self.command else f"{self.url}"
        return (
            f"MCP server {self.name!r} is not connected ({self.why or self.state}); stalwart "
            f"reconnects on its own. If it lasts, check {where}"
        )

    async def list_remote(self) -> list[dict[str, Any]]:
        """What the server offers now (name, description, input schema): for choosing
        which tools to declare. Needs the server connected."""
        session = self._session
        if session is None:
            raise ToolServerUnavailable(self._down_message(), dependency=self.name)
        async with asyncio.timeout(self.connect_timeout):
            listed = await _list_tools(session)
        return [dataclasses.asdict(t) for t in listed]


_CONNECTION_CLOSED = -32000  # mcp_types.CONNECTION_CLOSED


@contextlib.asynccontextmanager
async def _http(url: str, headers: Mapping[str, str]) -> AsyncIterator[Any]:
    from mcp.client.streamable_http import streamable_http_client

    if not headers:
        async with streamable_http_client(url) as streams:
            yield streams
        return
    import httpx2

    timeout = httpx2.Timeout(30.0, read=300.0)  # the mcp package's own defaults
    async with (
        httpx2.AsyncClient(headers=dict(headers), timeout=timeout) as client,
        streamable_http_client(url, http_client=client) as streams,
    ):
        yield streams


async def _list_tools(session: ClientSession) -> list[_Listed]:
    out: list[_Listed] = []
    cursor: str | None = None
    for _ in range(100):  # a server that pages forever cannot hang the connection
        from mcp.types import PaginatedRequestParams

        params = PaginatedRequestParams(cursor=cursor) if cursor else None
        page = await session.list_tools(params=params)
        out += [_Listed(t.name, t.description or "", dict(t.input_schema)) for t in page.tools]
        cursor = page.next_cursor
        if not cursor:
            break
    return out


def _text(content: Iterable[Any]) -> str:
    from mcp.types import TextContent

    return "\n".join(b.text for b in content if isinstance(b, TextContent)).strip()


def _content(content: Sequence[Any]) -> Any:
    """Unstructured content as JSON data: the text (one block), texts, or the blocks."""
    from mcp.types import TextContent

    if all(isinstance(block, TextContent) for block in content):
        texts = [block.text for block in content]
        return texts[0] if len(texts) == 1 else texts
    return [block.model_dump(mode="json", by_alias=True, exclude_none=True) for block in content]


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        return _describe(exc.exceptions[0])
    if isinstance(exc, TimeoutError):
        return "it did not answer in time"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def servers_of(tools: Iterable[Tool]) -> list[MCPServer]:
    """The MCP servers the given tools belong to, each once, in order."""
    out: dict[int, MCPServer] = {}
    for t in tools:
        if isinstance(t, MCPTool) and t.server is not None:
            out.setdefault(id(t.server), t.server)
    return list(out.values())
