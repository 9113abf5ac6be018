"""No operation in ``src/`` can wait without a deadline (issue 3, acceptance 4; checklist EH-3).

An AST lint over every module under ``src/stalwart`` (all packages, not only
resilience). It checks the concrete *synchronous* blocking APIs whose timeout
is a parameter, and fails naming ``file:line`` and the fix:

==========================================  ========================================
call                                        required
==========================================  ========================================
``httpx.Client(...)``, ``httpx.AsyncClient``  ``timeout=`` (sized for the operation kind)
``httpx.get/post/.../request/stream(...)``  ``timeout=``
``httpx.Timeout(None)``                     a number instead of ``None``
``subprocess.run/call/check_call/check_output``  ``timeout=``
``<x>.communicate(...)``                    ``timeout=``
``<x>.wait()`` (Event, Condition, Barrier,   a timeout argument (not ``None``)
Popen…), ``<x>.wait_for(pred)``
``<x>.acquire()`` / ``acquire(True)``        ``timeout=``, or ``blocking=False``
``<x>.join()`` (Thread, Process)            a timeout argument
``<q>.get()`` on a ``queue``/``multiprocessing`` queue   ``timeout=`` (or ``block=False``)
``<f>.result()`` on a ``concurrent.futures`` future      a timeout argument
``concurrent.futures.wait/as_completed``     ``timeout=``
``select.select(r, w, x)``                  the fourth (timeout) argument
``<s>.select()`` on a ``selectors`` selector  a timeout argument
``socket.create_connection(addr)``          a timeout argument
``urllib.request.urlopen(url)``             ``timeout=``
any call with ``timeout=None``              a number
==========================================  ========================================

Queues and futures are recognised by how the module binds them (assigned from a
``...Queue(...)`` / ``.submit(...)`` / ``run_coroutine_threadsafe(...)`` call, or
annotated with such a type), because ``.get()`` and ``.result()`` are common
names (``ContextVar.get()``, a done ``asyncio.Future.result()``) that never block.

Not checked, by design: the method-style waits (``.wait()``, ``.get()``,
``.acquire()``, ``.join()``, ``.result()``, ``.communicate()``) inside ``async
def`` bodies, when awaited, or when handed to a coroutine consumer such as
``asyncio.wait_for`` — there they are coroutines, bounded by the caller wrapping
them in ``asyncio.timeout``/``deadline_scope`` (as stalwart's policies do); the
function-style rules (httpx, subprocess, select, sockets, urllib) apply in async
code too. ``with lock:`` blocks (a critical section, whose body must itself not
block); ``Connection.recv()`` (guard it with ``poll(timeout)``).

Escape hatch for a wait that truly cannot be bounded: a comment
``# no-deadline: <reason>`` on the call's line (any line of a multi-line call)
or the line just above. A hatch with no reason is itself reported. A hatch may
also document an intended unbounded ``await`` (which this lint does not check).
"""

from __future__ import annotations

import ast
import dataclasses
import io
import pathlib
import re
import textwrap
import tokenize

import pytest

SRC = pathlib.Path(__file__).resolve().parents[3] / "src" / "stalwart"
HATCH = re.compile(r"#\s*no-deadline\b:?(.*)$")

HTTPX_CLIENTS = {"httpx.Client", "httpx.AsyncClient"}
HTTPX_FUNCTIONS = {
    f"httpx.{name}"
    for name in ("get", "post", "put", "patch", "delete", "head", "options", "request", "stream")
}
SUBPROCESS_FUNCTIONS = {
    "subprocess.run",
    "subprocess.call",
    "subprocess.check_call",
    "subprocess.check_output",
}
# qualified name -> index of the positional timeout argument
POSITIONAL_TIMEOUT = {
    "concurrent.futures.wait": 1,
    "concurrent.futures.as_completed": 1,
    "select.select": 3,
    "socket.create_connection": 1,
    "urllib.request.urlopen": 2,
}
# Calls whose coroutine arguments are not blocking calls: ``loop.run_until_complete(ev.wait())``.
COROUTINE_CONSUMERS = {
    "wait_for",
    "shield",
    "create_task",
    "ensure_future",
    "gather",
    "run",
    "run_until_complete",
    "run_coroutine_threadsafe",
    "wait",
    "timeout",
}


@dataclasses.dataclass(frozen=True, order=True)
class Finding:
    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


def _has_kw(call: ast.Call, name: str) -> bool:
    return any(k.arg == name for k in call.keywords) or any(k.arg is None for k in call.keywords)


def _kw(call: ast.Call, name: str) -> ast.expr | None:
    for keyword in call.keywords:
        if keyword.arg == name:
            return keyword.value
    return None


def _is_none(node: ast.expr | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is None


def _is_true(node: ast.expr | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def _has_timeout(call: ast.Call, position: int) -> bool:
    """A non-None timeout given by keyword or at ``position``; ``**kwargs`` counts as given."""
    if any(k.arg is None for k in call.keywords):
        return True
    keyword = _kw(call, "timeout")
    if keyword is not None:
        return not _is_none(keyword)
    if any(isinstance(a, ast.Starred) for a in call.args):
        return True
    return len(call.args) > position and not _is_none(call.args[position])


class _Checker(ast.NodeVisitor):
    def __init__(self, path: str, tree: ast.Module) -> None:
        self.path = path
        self.findings: list[tuple[int, int, str]] = []  # (line, end_line, message)
        self.aliases: dict[str, str] = {}
        self.queues: set[str] = set()
        self.futures: set[str] = set()
        self.selectors: set[str] = set()
        self.awaited: set[int] = set()
        self.consumed: set[int] = set()
        self.async_depth = 0
        self._prepare(tree)

    # -- what names mean in this module ---------------------------------------------------

    def _prepare(self, tree: ast.Module) -> None:
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    self.aliases[alias.asname or alias.name.split(".")[0]] = (
                        alias.name if alias.asname else alias.name.split(".")[0]
                    )
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    self.aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        for node in ast.walk(tree):
            if isinstance(node, ast.Await) and isinstance(node.value, ast.Call):
                self.awaited.add(id(node.value))
            elif isinstance(node, ast.Call):
                tail = self._tail(node.func)
                if tail in COROUTINE_CONSUMERS:
                    for arg in node.args:
                        if isinstance(arg, ast.Call):
                            self.consumed.add(id(arg))
            if isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                kind = self._binding_kind(node.value, getattr(node, "annotation", None))
                for target in targets:
                    self._bind(ast.unparse(target), kind)
            elif isinstance(node, ast.arg) and node.annotation is not None:
                self._bind(node.arg, self._binding_kind(None, node.annotation))

    def _bind(self, name: str, kind: str | None) -> None:
        if kind == "queue":
            self.queues.add(name)
        elif kind == "future":
            self.futures.add(name)
        elif kind == "selector":
            self.selectors.add(name)

    def _binding_kind(self, value: ast.expr | None, annotation: ast.expr | None) -> str | None:
        if isinstance(value, ast.Call):
            qualified = self._qualified(value.func) or ""
            tail = self._tail(value.func) or ""
            if tail.endswith("Queue") and not qualified.startswith("asyncio."):
                return "queue"
            if tail.endswith("Selector") and qualified.startswith("selectors."):
                return "selector"
            if tail in ("submit", "run_coroutine_threadsafe"):
                return "future"
        if annotation is not None:
            text = ast.unparse(annotation)
            names = {self.aliases.get(n, n) for n in re.findall(r"[A-Za-z_][\w.]*", text)}
            if any(n.endswith("Queue") and not n.startswith("asyncio") for n in names):
                return "queue"
            if any(n.startswith("concurrent.futures") and n.endswith("Future") for n in names):
                return "future"
        return None

    def _qualified(self, func: ast.expr) -> str | None:
        parts: list[str] = []
        while isinstance(func, ast.Attribute):
            parts.append(func.attr)
            func = func.value
        if not isinstance(func, ast.Name):
            return None
        base = self.aliases.get(func.id, func.id)
        return ".".join([base, *reversed(parts)])

    @staticmethod
    def _tail(func: ast.expr) -> str | None:
        if isinstance(func, ast.Attribute):
            return func.attr
        if isinstance(func, ast.Name):
            return func.id
        return None

    # -- traversal ------------------------------------------------------------------------

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self.async_depth += 1
        self.generic_visit(node)
        self.async_depth -= 1

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        saved, self.async_depth = self.async_depth, 0  # a sync def inside an async def is sync
        self.generic_visit(node)
        self.async_depth = saved

    def visit_Lambda(self, node: ast.Lambda) -> None:
        saved, self.async_depth = self.async_depth, 0
        self.generic_visit(node)
        self.async_depth = saved

    def _flag(self, call: ast.Call, message: str) -> None:
        self.findings.append((call.lineno, call.end_lineno or call.lineno, message))

    def visit_Call(self, call: ast.Call) -> None:
        self._check(call)
        self.generic_visit(call)

    def _check(self, call: ast.Call) -> None:
        qualified = self._qualified(call.func)
        if _is_none(_kw(call, "timeout")):
            self._flag(call, "timeout=None disables the timeout; pass a number of seconds")
            return
        if qualified in HTTPX_CLIENTS:
            if not _has_kw(call, "timeout"):
                self._flag(
                    call,
                    f"{qualified}() without timeout=; pass timeout= sized for the operation "
                    "kind (e.g. effective_timeout('model'))",
                )
            return
        if qualified in HTTPX_FUNCTIONS or qualified in SUBPROCESS_FUNCTIONS:
            if not _has_kw(call, "timeout"):
                self._flag(
                    call, f"{qualified}() without timeout=; pass timeout=effective_timeout(...)"
                )
            return
        if (
            qualified == "httpx.Timeout"
            and call.args
            and _is_none(call.args[0])
            and not call.keywords
        ):
            self._flag(call, "httpx.Timeout(None) never times out; give it a number of seconds")
            return
        if qualified in POSITIONAL_TIMEOUT:
            if not _has_timeout(call, POSITIONAL_TIMEOUT[qualified]):
                self._flag(call, f"{qualified}() without a timeout; pass one")
            return
        if not isinstance(call.func, ast.Attribute):
            return
        if self.async_depth or id(call) in self.awaited or id(call) in self.consumed:
            return
        method = call.func.attr
        receiver = ast.unparse(call.func.value)
        nargs = len(call.args)
        if method == "wait" and not _has_timeout(call, 0):
            self._flag(
                call,
                f"{receiver}.wait() without a timeout (Event/Condition/Barrier/Popen wait "
                "forever); pass timeout=",
            )
        elif method == "wait_for" and not _has_timeout(call, 1):
            self._flag(call, f"{receiver}.wait_for(...) without a timeout; pass timeout=")
        elif method == "communicate" and not _has_timeout(call, 1):
            self._flag(call, f"{receiver}.communicate() without timeout=; pass timeout=")
        elif method == "acquire":
            blocking = call.args[0] if nargs else _kw(call, "blocking")
            if (blocking is None or _is_true(blocking)) and not _has_timeout(call, 1):
                self._flag(
                    call,
                    f"{receiver}.acquire() can block forever; pass timeout= (and handle False) "
                    "or blocking=False",
                )
        elif method == "join" and nargs == 0 and not call.keywords:
            self._flag(
                call, f"{receiver}.join() without a timeout; pass timeout= and check it ended"
            )
        elif method == "get" and receiver in self.queues:
            block = call.args[0] if nargs else _kw(call, "block")
            if (block is None or _is_true(block)) and not _has_timeout(call, 1):
                self._flag(
                    call,
                    f"{receiver}.get() on a queue blocks forever; pass timeout= "
                    "(queue.Empty on expiry) or use get_nowait()",
                )
        elif method == "select" and receiver in self.selectors and not _has_timeout(call, 0):
            self._flag(call, f"{receiver}.select() without a timeout waits forever; pass timeout=")
        elif method == "result" and not _has_timeout(call, 0):
            inner = call.func.value
            chained = isinstance(inner, ast.Call) and self._tail(inner.func) in (
                "submit",
                "run_coroutine_threadsafe",
            )
            if receiver in self.futures or chained:
                self._flag(call, f"{receiver}.result() on a future waits forever; pass timeout=")


def _hatches(source: str) -> dict[int, str]:
    """Line -> reason of each ``# no-deadline:`` comment (reason may be empty)."""
    found: dict[int, str] = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            match = HATCH.search(token.string)
            if match:
                found[token.start[0]] = match.group(1).strip()
    return found


def check_source(source: str, path: str = "<string>") -> list[Finding]:
    """Every unbounded wait in ``source`` not exempted by a reasoned escape hatch."""
    try:
        tree = ast.parse(source, filename=path)
    except SyntaxError as exc:
        return [Finding(path, exc.lineno or 0, f"cannot parse: {exc.msg}")]
    checker = _Checker(path, tree)
    checker.visit(tree)
    hatches = _hatches(source)
    findings: list[Finding] = []
    for line, end_line, message in checker.findings:
        exempt = [n for n in range(line - 1, end_line + 1) if n in hatches]
        if exempt:
            continue
        findings.append(
            Finding(
                path,
                line,
                f"{message}. If this wait truly cannot be bounded, say why with "
                "`# no-deadline: <reason>` on this line.",
            )
        )
    for line, reason in hatches.items():
        if not reason:
            findings.append(Finding(path, line, "`# no-deadline:` needs a reason after the colon"))
    return sorted(findings)


# -- the rule itself ----------------------------------------------------------------------


def test_src_has_no_operation_that_can_wait_forever() -> None:
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 20, f"expected the whole src tree under {SRC}"
    findings: list[Finding] = []
    for file in files:
        rel = file.relative_to(SRC.parents[1]).as_posix()
        findings.extend(check_source(file.read_text(encoding="utf-8"), rel))
    assert not findings, (
        "operations that can wait without a deadline (see docs/resilience.md, "
        "'No operation without a deadline'):\n" + "\n".join(f"  {f}" for f in findings)
    )


# -- the lint's own tests: what it flags, and what it must not ----------------------------


FLAGGED = {
    "httpx client": "import httpx\nclient = httpx.Client()\n",
    "httpx async client alias": "from httpx import AsyncClient as AC\nc = AC(base_url='x')\n",
    "httpx module get": "import httpx\nhttpx.get('http://x')\n",
    "httpx Timeout(None)": "import httpx\nt = httpx.Timeout(None)\n",
    "timeout=None anywhere": "import httpx\nc = httpx.Client(timeout=None)\n",
    "subprocess.run": "import subprocess\nsubprocess.run(['ls'])\n",
    "from subprocess import check_output": (
        "from subprocess import check_output\ncheck_output(['ls'])\n"
    ),
    "Popen.wait": "import subprocess\np = subprocess.Popen(['ls'])\np.wait()\n",
    "communicate": "def f(p):\n    return p.communicate(b'in')\n",
    "Event.wait": "import threading\ne = threading.Event()\ne.wait()\n",
    "Event.wait(None)": "def f(e):\n    e.wait(None)\n",
    "Condition.wait_for": "def f(c):\n    c.wait_for(lambda: True)\n",
    "lock acquire": "import threading\nlock = threading.Lock()\nlock.acquire()\n",
    "lock acquire(True)": "def f(lock):\n    lock.acquire(True)\n",
    "thread join": "import threading\nt = threading.Thread(target=print)\nt.join()\n",
    "queue get": "import queue\nq = queue.Queue()\nq.get()\n",
    "queue get on attribute": (
        "import queue\nclass A:\n    def __init__(self):\n        self._q = queue.SimpleQueue()\n"
        "    def take(self):\n        return self._q.get(block=True)\n"
    ),
    "annotated mp queue": (
        "import multiprocessing as mp\ndef f(q: mp.Queue):\n    return q.get()\n"
    ),
    "future result": (
        "from concurrent.futures import ThreadPoolExecutor\n"
        "def f(ex: ThreadPoolExecutor):\n    fut = ex.submit(print)\n    return fut.result()\n"
    ),
    "chained future result": "def f(ex):\n    return ex.submit(print).result()\n",
    "futures.wait": "import concurrent.futures as cf\ncf.wait([])\n",
    "select": "import select\nselect.select([], [], [])\n",
    "create_connection": "import socket\nsocket.create_connection(('h', 1))\n",
    "urlopen": "from urllib.request import urlopen\nurlopen('http://x')\n",
    "selector select": "import selectors\nsel = selectors.DefaultSelector()\nsel.select()\n",
    "subprocess.run inside async def": (
        "import subprocess\nasync def f():\n    subprocess.run(['ls'])\n"
    ),
    "httpx client inside async def": (
        "import httpx\nasync def f():\n    async with httpx.AsyncClient() as c:\n        pass\n"
    ),
    "sync def inside async def": (
        "async def outer(e):\n    def inner():\n        e.wait()\n    return inner\n"
    ),
}

CLEAN = {
    "httpx client with timeout": "import httpx\nc = httpx.Client(timeout=5.0)\n",
    "httpx client with kwargs": "import httpx\ndef f(**kw):\n    return httpx.Client(**kw)\n",
    "subprocess with timeout": "import subprocess\nsubprocess.run(['ls'], timeout=3)\n",
    "Popen.wait with timeout": "def f(p):\n    p.wait(timeout=3)\n",
    "positional wait timeout": "def f(e):\n    e.wait(2.0)\n",
    "communicate timeout": "def f(p):\n    p.communicate(b'', 5)\n",
    "lock nonblocking": "def f(lock):\n    lock.acquire(False)\n    lock.acquire(blocking=False)\n",
    "lock with timeout": "def f(lock):\n    lock.acquire(timeout=1)\n    lock.acquire(True, 2)\n",
    "with lock": "import threading\nlock = threading.Lock()\nwith lock:\n    pass\n",
    "join with timeout": "def f(t):\n    t.join(5)\n",
    "str join": "', '.join(['a'])\n",
    "contextvar get": ("import contextvars\nv = contextvars.ContextVar('v')\nv.get()\n"),
    "dict get": "d = {}\nd.get('k')\n",
    "queue get with timeout": "import queue\nq = queue.Queue()\nq.get(timeout=1)\nq.get(False)\n",
    "asyncio queue": "import asyncio\nq = asyncio.Queue()\nasync def f():\n    await q.get()\n",
    "awaited waits": (
        "import asyncio\nasync def f(e, lock, proc):\n    await e.wait()\n"
        "    await lock.acquire()\n    await proc.communicate()\n"
    ),
    "coroutine handed to wait_for": (
        "import asyncio\nasync def f(e):\n    await asyncio.wait_for(e.wait(), 1)\n"
    ),
    "run_until_complete in sync code": "def f(loop, e):\n    loop.run_until_complete(e.wait())\n",
    "asyncio future result": "def f(task):\n    return task.result()\n",
    "future result with timeout": "def f(ex):\n    return ex.submit(print).result(timeout=1)\n",
    "select with timeout": "import select\nselect.select([], [], [], 0.5)\n",
    "selector select with timeout": (
        "import selectors\nsel = selectors.DefaultSelector()\nsel.select(1.0)\n"
    ),
    "query builder select": "def f(table):\n    return table.select()\n",
    "escape hatch with reason": (
        "def f(q):\n    q.join()  # no-deadline: JoinableQueue.join has no timeout parameter\n"
    ),
    "escape hatch on the line above": (
        "def f(t):\n    # no-deadline: the interpreter is exiting; the thread is a daemon\n"
        "    t.join()\n"
    ),
    "escape hatch inside a multi-line call": (
        "import subprocess\nsubprocess.run(\n    ['ls'],  # no-deadline: test fixture\n)\n"
    ),
}


@pytest.mark.parametrize("source", FLAGGED.values(), ids=FLAGGED.keys())
def test_lint_flags(source: str) -> None:
    findings = check_source(source, "pkg/mod.py")
    assert len(findings) == 1, findings
    assert str(findings[0]).startswith("pkg/mod.py:")
    assert "# no-deadline: <reason>" in str(findings[0])


@pytest.mark.parametrize("source", CLEAN.values(), ids=CLEAN.keys())
def test_lint_accepts(source: str) -> None:
    assert check_source(source) == []


def test_lint_reports_file_line_and_fix() -> None:
    source = textwrap.dedent(
        """\
        import subprocess


        def build():
            return subprocess.check_call(["make"])
        """
    )
    (finding,) = check_source(source, "src/stalwart/x/_build.py")
    assert finding.line == 5
    assert str(finding).startswith(
        "src/stalwart/x/_build.py:5: subprocess.check_call() without timeout="
    )


def test_escape_hatch_without_a_reason_is_reported() -> None:
    source = "def f(q):\n    q.join()  # no-deadline:\n"
    (finding,) = check_source(source, "m.py")
    assert finding.line == 2 and "needs a reason" in finding.message


def test_escape_hatch_may_document_an_intended_await() -> None:
    source = (
        "async def serve(done):\n"
        "    # no-deadline: a server runs until it is told to stop\n"
        "    await done.wait()\n"
    )
    assert check_source(source, "m.py") == []


def test_escape_hatch_text_inside_a_string_is_not_a_hatch() -> None:
    source = "import threading\ne = threading.Event()\ne.wait(); s = '# no-deadline: x'\n"
    (finding,) = check_source(source, "m.py")
    assert "e.wait()" in finding.message


def test_unparsable_file_is_reported() -> None:
    (finding,) = check_source("def broken(:\n", "m.py")
    assert "cannot parse" in finding.message
