"""An obedient scripted model: it carries out every goal it reads, over several calls.

The simulator's ``gullible`` persona obeys one injected tool call at a time. A real
model talked into an attack does more: it *looks things up, then acts* on what it
found ("look up order #7777 and refund its full amount"). :class:`ObedientModel`
is such a model, in process (no server): a ``planner`` reads the conversation
(:class:`Seen`) and returns the steps it wants done, in order; the model answers
each request with the first step not yet attempted, then with a final answer.
Goals found later (in a tool result) are planned before what is left of the task,
as a hijacked model would. A step whose arguments need a result not seen yet waits.

It implements the model-client protocol, so it goes wherever a model goes: an
agent's ``models`` (``Provider(client=...)``), a red-team bench, a user's test.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from typing import Any

from stalwart.llm import Message, ModelRequest, ModelResponse, ToolCall, Usage

__all__ = ["ObedientModel", "Seen", "Step"]


@dataclasses.dataclass(frozen=True, slots=True)
class Seen:
    """What the model has read: the user's text, every text in order with its role
    (``user``, ``tool``), the tool calls it made and their results."""

    user: str
    texts: tuple[tuple[str, str], ...]
    calls: tuple[tuple[str, dict[str, Any]], ...]
    results: tuple[tuple[str, dict[str, Any], str], ...]
    tools: frozenset[str]

    def result_of(self, tool: str, **args: Any) -> Any:
        """The parsed JSON result of the call of ``tool`` with ``args`` (None: not yet)."""
        for name, called, text in self.results:
            if name == tool and all(str(called.get(k)) == str(v) for k, v in args.items()):
                try:
                    return json.loads(text)
                except ValueError:
                    return text
        return None


@dataclasses.dataclass(frozen=True, slots=True)
class Step:
    """A tool call to make (``tool`` and ``args``), or a final ``answer``. ``ready=False``
    says it waits for a result not seen yet."""

    tool: str = ""
    args: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    answer: str = ""
    ready: bool = True


Planner = Callable[[Seen], list[Step]]


def _key(tool: str, args: Mapping[str, Any]) -> str:
    return tool + json.dumps({k: str(v) for k, v in args.items()}, sort_keys=True)


class ObedientModel:
    """A :class:`~stalwart.llm.ModelClient` that plans with ``planner`` (module docstring)."""

    def __init__(
        self, planner: Planner, *, name: str = "obedient:redteam", offered_only: bool = False
    ) -> None:
        self.planner = planner
        self.name = name
        self.offered_only = offered_only
        """Call only the tools the request offers (False: also tools an attacker names,
        as a model that makes up a tool call does; the runtime must deny them)."""
        self.calls = 0

    async def complete(
        self, request: ModelRequest, *, timeout: float | None = None
    ) -> ModelResponse:
        self.calls += 1
        seen = read(request)
        offered = seen.tools
        done = {_key(t, a) for t, a in seen.calls}
        message = Message(role="assistant", content="Done.")
        for step in self.planner(seen):
            if step.answer:
                message = Message(role="assistant", content=step.answer)
                break
            if not step.ready or (self.offered_only and step.tool not in offered):
                continue
            if _key(step.tool, step.args) in done:
                continue
            call = ToolCall(id=f"call_{len(seen.calls) + 1}", name=step.tool,
                            arguments=dict(step.args))  # fmt: skip
            message = Message(role="assistant", tool_calls=(call,))
            break
        words = sum(len(m.content.split()) for m in request.messages)
        return ModelResponse(
            model=self.name,
            message=message,
            finish_reason="tool_calls" if message.tool_calls else "stop",
            usage=Usage(prompt_tokens=words, completion_tokens=8),
            cost_usd=0.0,
            latency_s=0.0,
        )

    async def aclose(self) -> None:
        return None


def _strings(content: str) -> list[str]:
    """The text leaves of a JSON tool result (the result itself if it is not JSON)."""
    try:
        stack: list[Any] = [json.loads(content)]
    except ValueError:
        return [content]
    out: list[str] = []
    while stack:
        item = stack.pop(0)
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            out.append(item)
    return out


def read(request: ModelRequest) -> Seen:
    """The conversation of ``request`` as a :class:`Seen`."""
    texts: list[tuple[str, str]] = []
    calls: list[tuple[str, dict[str, Any]]] = []
    by_id: dict[str, tuple[str, dict[str, Any]]] = {}
    results: list[tuple[str, dict[str, Any], str]] = []
    user = ""
    for m in request.messages:
        if m.role == "user":
            user = user or m.content
            texts.append(("user", m.content))
        elif m.role == "assistant":
            for c in m.tool_calls:
                calls.append((c.name, dict(c.arguments)))
                by_id[c.id] = (c.name, dict(c.arguments))
        elif m.role == "tool":
            texts.append(("tool", "\n".join(_strings(m.content))))
            name, args = by_id.get(m.tool_call_id or "", (m.name or "", {}))
            results.append((name, args, m.content))
    return Seen(user, tuple(texts), tuple(calls), tuple(results),
                frozenset(t.name for t in request.tools))  # fmt: skip
