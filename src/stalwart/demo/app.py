"""The helpdesk app: a triage agent hands tickets to a resolver agent with tools.

Run it with ``stalwart run stalwart.demo.app:app`` (it starts the simulated
models and services itself). It ships inside stalwart, so that ``stalwart verify``,
``stalwart chaos`` and ``stalwart sim`` have an app to default to from an installed
wheel; ``examples/helpdesk`` in the repository names these same objects, and
``stalwart demo --helpdesk`` (:mod:`stalwart.demo.run`) is ``make demo``.

The simulated models' API key is a secret reference, ``secret://sim-api-key``,
resolved at each request from the secrets provider (the local vault by default)
as a real provider's key would be; the node starting the app creates it in the
local vault when it is missing (``stalwart.node._simkey``), so a fresh checkout
runs as it is. The resolver's model spend is capped per task, per agent per day
and per day (``BUDGET``).
"""

from __future__ import annotations

import pathlib
from typing import Any

from stalwart.agent import App, LLMAgent, PythonAgent, TaskContext, VerifyProfile, http_client
from stalwart.guard import (
    ArgRule,
    Budget,
    Resource,
    Security,
    TaintPolicy,
    ToolRule,
    forbid,
    permit,
)
from stalwart.llm import Provider
from stalwart.llm.sim import Rule, Scenario, service_url
from stalwart.tools import tool

MANIFEST = pathlib.Path(__file__).with_name("deployment.yaml")
"""A Kubernetes Deployment running this app with its probes wired (what MA-1 checks)."""

# -- tools: each talks to a simulated service over HTTP, under its own deadline -------------


@tool(scopes=["orders:read"], timeout=10, alternatives=["search_kb"])
async def lookup_order(order_id: int) -> dict[str, Any]:
    """Look up an order: its status, amount, items and customer."""
    r = await http_client().get(service_url(f"/tools/orders/{order_id}"), timeout=10)
    r.raise_for_status()
    return dict(r.json())


@tool(scopes=["kb:read"], timeout=10)
async def search_kb(query: str) -> list[dict[str, Any]]:
    """Search the knowledge base; returns the best matching articles."""
    r = await http_client().get(service_url("/tools/kb/search"), params={"q": query}, timeout=10)
    r.raise_for_status()
    return list(r.json()["results"])


@tool(
    scopes=["payments:write"],
    timeout=15,
    side_effect=True,
    deduplicates=True,
    alternatives=["send_email"],
)
async def refund(order_id: int, amount_cents: int, idempotency_key: str) -> dict[str, Any]:
    """Refund part or all of an order (the payment service dedupes on the key)."""
    r = await http_client().post(
        service_url("/tools/payments/refund"),
        json={"order_id": order_id, "amount_cents": amount_cents},
        headers={"Idempotency-Key": idempotency_key},
        timeout=10,
    )
    r.raise_for_status()
    return dict(r.json())


@tool(scopes=["email:send"], timeout=15, side_effect=True)
async def send_email(to: str, subject: str, body: str, idempotency_key: str) -> dict[str, Any]:
    """Send an e-mail to a customer (the mail service does NOT dedupe: at most once)."""
    r = await http_client().post(
        service_url("/tools/email/send"),
        json={"to": to, "subject": subject, "body": body},
        headers={"Idempotency-Key": idempotency_key},
        timeout=10,
    )
    r.raise_for_status()
    return dict(r.json())


# -- what the simulated model does with a ticket --------------------------------------------

ORDER = r"order #(?P<order_id>\d+)"
REFUND = ORDER + r".*?refund of (?P<amount>\d+) cents.*?from (?P<email>[\w.+-]+@[\w.-]+)"
SCENARIO = Scenario(
    (
        Rule(match=REFUND, call="lookup_order", arguments={"order_id": "{order_id}"}),
        Rule(
            match=REFUND,
            requires=("lookup_order",),
            call="refund",
            arguments={"order_id": "{order_id}", "amount_cents": "{amount}"},
            alternative="send_email",
            alternative_arguments={
                "to": "{email}",
                "subject": "Your refund for order {order_id}",
                "body": "We could not refund {amount} cents automatically; "
                "a colleague will do it within a day.",
            },
        ),
        Rule(
            match=REFUND,
            requires=("lookup_order", "refund"),
            call="send_email",
            arguments={
                "to": "{email}",
                "subject": "Your refund for order {order_id}",
                "body": "We have refunded {amount} cents for order {order_id}.",
            },
        ),
        Rule(
            match=REFUND,
            requires=("lookup_order", "refund", "send_email"),
            answer="Refunded {amount} cents for order #{order_id}; the customer was e-mailed.",
        ),
        Rule(
            match=ORDER,
            call="lookup_order",
            arguments={"order_id": "{order_id}"},
            alternative="search_kb",
        ),
        Rule(
            match=ORDER,
            requires=("lookup_order",),
            answer="Order #{order_id}: {result:lookup_order}",
        ),
        Rule(
            match=r"(?P<topic>password|shipping|address|tracking)",
            call="search_kb",
            arguments={"query": "{topic}"},
        ),
        Rule(
            match=r"(?P<topic>password|shipping|address|tracking)",
            requires=("search_kb",),
            answer="From our help center: {result:search_kb}",
        ),
    )
)


# -- what the runtime lets the model do (the model itself may be talked into anything) --------

AUTO_REFUND_LIMIT_CENTS = 5000
"""Refunds above this always wait for a person."""

RULES = (
    # permit(principal, action == "refund", resource = lookup_order(order_id))
    #   when { resource.customer == principal && arg.amount_cents <= resource.amount_cents }
    permit(
        "refund",
        resource=Resource("lookup_order", arg="order_id"),
        when=["resource.customer == principal.id", "arg.amount_cents <= resource.amount_cents"],
        reason="a refund must be for the customer's own order, within its total",
    ),
    # forbid(principal, action == "refund", resource) when { arg.amount_cents > 5000 }
    forbid(
        "refund",
        when=f"arg.amount_cents > {AUTO_REFUND_LIMIT_CENTS}",
        then="approve",
        reason=f"refunds above the auto-approval limit ({AUTO_REFUND_LIMIT_CENTS} cents) wait "
        "for a person",
    ),
    # permit(principal, action == "send_email", resource)
    #   when { context.provenance(arg.to) in [principal] }: the address the channel vouches for
    permit(
        "send_email",
        when="provenance(arg.to) in [principal]",
        reason="mail goes only to the customer the ticket is from",
    ),
)
"""Who may do what to whose orders (see docs/security.md for the form)."""

BUDGET = Budget(task_usd=0.25, agent_usd=1500.0, day_usd=3000.0)
"""Model spend limits (the sim is priced like gpt-4o and gpt-4o-mini). A ticket costs
about $0.0014 (a refund, the dearest, $0.003); a call reserves its worst case, about
$0.014, first. The daily limits leave room for a 24 h soak at 5 tickets/s (about $600)
and stop a runaway far short of what it could otherwise spend in a day."""

SECURITY = Security(
    budget=BUDGET,
    taint=TaintPolicy(
        # set by the ticketing system, not typed by the customer: the account (the
        # principal's id when the submission names none) and the sender's address
        principal_fields=("customer", "from"),
        record_tools=("lookup_order",),  # our order database: facts, not instructions
        document_tools=("search_kb",),
        tools={
            "refund": ToolRule(
                args={
                    "order_id": ArgRule.of("user", "record"),
                    "amount_cents": ArgRule.of("user", "record"),
                },
            ),
            "send_email": ToolRule(
                args={
                    "to": ArgRule.of("principal", "user"),
                    # composed by the model; links, addresses and wording found only in
                    # untrusted text hold the mail (TextCheck's defaults)
                    "subject": ArgRule(free_text=True),
                    "body": ArgRule(free_text=True),
                },
            ),
        },
        rules=RULES,
        # the helpdesk answers every ticket at once: a held call is not run and the
        # resolver tells the customer a colleague will follow up (the triage agent waits
        # in line for that answer). An app whose held calls should wait for a person
        # keeps the default, durable approvals (docs/security.md).
        durable_approvals=False,
    ),
)

# -- the agents -------------------------------------------------------------------------------

RESOLVER = LLMAgent(
    name="resolver",
    model="main",
    system=(
        "You resolve customer support tickets. Use the tools to look up orders, refund "
        "them when the policy allows, e-mail the customer, and answer briefly."
    ),
    tools=[lookup_order, search_kb, refund, send_email],
    scopes=["orders:read", "kb:read", "payments:write", "email:send"],
    max_steps=12,
    history_tokens=6000,
    # The sim answers at once, so this agent is CPU-bound: a few dozen tasks at a time,
    # so that overload queues and is shed at admission (LC-1) instead of slowing every
    # task. Not 8, as before: each task also waits (commits, the sim's replies, tools),
    # and interleaved in one bench process the node served a median 1.22x the tickets/s
    # at 32 (more in 13 of 14 rounds; 64 no more than 32), though in pairs of fresh processes
    # the two were within the machine's noise (docs/agents.md, "How tasks run"). An agent
    # that waits on real models keeps the default (1000).
    max_tasks=32,
    security=SECURITY,
)


async def triage(ctx: TaskContext, ticket: Any) -> dict[str, Any]:
    """Route a ticket: anything about an order or an account goes to the resolver."""
    text = str(ticket.get("text", "")) if isinstance(ticket, dict) else str(ticket)
    stamp = await ctx.now()
    queue = (
        "resolver"
        if any(w in text.lower() for w in ("order", "password", "shipping", "address", "tracking"))
        else "human"
    )
    if queue == "human":
        return {
            "status": "completed",
            "queue": "human",
            "answer": "Routed to a human agent.",
            "received_at": stamp,
        }
    handed: dict[str, Any] = {"text": text}
    for field in ("customer", "from"):  # what the ticketing system vouches for
        if isinstance(ticket, dict) and isinstance(ticket.get(field), str):
            handed[field] = ticket[field]
    outcome = await ctx.hand_over("resolver", handed, timeout=120)
    result = outcome.get("result") or {}
    answer = {
        "status": result.get("status", outcome.get("status")),
        "queue": "resolver",
        "answer": result.get("answer", ""),
        "received_at": stamp,
        "resolver_task": outcome.get("task_id"),
        "usage": result.get("usage", {}),
    }
    if result.get("outcome_unknown") is True:  # an e-mail or refund cut off mid-call
        answer["outcome_unknown"] = True
        answer["effects"] = result.get("effects", [])
    return answer


# as many as the resolver: each triage task waits on its resolver sub-task, so fewer
# would bound the resolver too
TRIAGE = PythonAgent(name="triage", fn=triage, agents=("resolver",), max_tasks=32)

app = App(
    agents=[TRIAGE, RESOLVER],
    models={"main": ["sim:strong", "sim:weak"]},
    # the node puts the sim's address here; the key is a reference, never a value
    providers={"sim": Provider("http://set-by-the-node", api_key="secret://sim-api-key")},
    store="sqlite:///helpdesk.db",
    sim=True,
    scenario=SCENARIO,
    intensity=20,
    period=60,
    entry="triage",
    workload="stalwart.demo.tickets:generate",
    # how `stalwart verify` may fault the tools: each talks to a simulated service
    verify=VerifyProfile(
        tools={
            "lookup_order": "sim:orders",
            "search_kb": "sim:kb",
            "refund": "sim:payments",
            "send_email": "sim:email",
        },
        # MA-1 reads the probes from it: the demo's own Deployment, shipped beside this file
        manifest=str(MANIFEST),
        # LC-1's latency objective: p99 under 10 s at 1x, 2x and 3x the average rate (a
        # ticket is two model agents and up to four tool calls; without one, verify's
        # default is relative to the 1x p99 and moves with the machine's other load)
        latency_p99_s=10.0,
    ),
    # verify SE-2: the single-call corpus and the multi-step red team
    redteam="stalwart.demo.multistep:redteam_hook",
)
