"""SE-1, SE-2, SE-3: secrets (posture, rotation under load), injections, no leaks."""

from __future__ import annotations

import asyncio
import base64
import importlib
import json
import os
import pathlib
import sys
from collections.abc import Callable
from typing import Any

import httpx

from stalwart.agent._guarded import scope_table
from stalwart.config import load_ref
from stalwart.durable import TaskRecord
from stalwart.errors import NotExercised
from stalwart.guard import LocalVault, is_secret_ref, secret_name, secrets_posture
from stalwart.observe import REGISTRY
from stalwart.verify._poll import until
from stalwart.verify._registry import Outcome, check
from stalwart.verify._target import VERIFY_ENV, Target

# canaries: values that must never come out of the node, in any form it writes
RED_TEAM_TIMEOUT_S = 600.0
"""The generic red team's deadline: about 300 runs of the entry agent, twice, in one
process with its simulated model (100-200 s on 2 shared cores; over 300 s when another
verify runs beside it)."""

CANARIES = {
    "email": "canary.person.4471@example.org",
    "card": "4111 1111 1111 1111",
    "ssn": "078-05-1120",
    "aws_key": "AKIA" + "IOSFODNN7CANARY1",  # split: the shipped-code secret scan must pass
    "github_token": "ghp_" + "C4n4ryT0k3n" * 3 + "abc",
}


def _app_paths(t: Target) -> list[pathlib.Path]:
    """The directory of the app's module (or of its ``.toml`` file): its code and config."""
    if t.app_ref.endswith(".toml"):
        path = pathlib.Path(t.app_ref)
    else:
        module = importlib.import_module(t.app_ref.partition(":")[0])
        path = pathlib.Path(str(getattr(module, "__file__", "") or "."))
    return [path.resolve().parent] if path.exists() else []


ROTATIONS = 2
IN_FLIGHT = 30
"""Tasks kept in flight while the key is rotated: each finished one is replaced by a new
one until the rotations are done, so every key meets calls however the machine
schedules the tasks."""
TASKS_PER_KEY = 30
"""Tasks finished with a key in use before it is rotated (at least)."""
MAX_LOAD_TASKS = 600
"""The most tasks the load sends while the key is rotated (it ends with the rotations)."""
LATE_TASKS = 30
"""Tasks submitted after both rotations settled: they can only use the newest key."""
ROTATION_WAIT_S = 30.0
"""How long a rotation waits for the key in use to serve its first call, with the load
still running (a fixed batch of 90 tasks sometimes made its last model call before the
middle key came in: make test with both cores busy, CI 2026-12-07)."""


def _key_refreshes() -> float:
    """``stalwart_model_key_refreshes_total`` summed (the agents ship it to the node)."""
    total = 0.0
    for family in REGISTRY.collect():
        if family.name == "stalwart_model_key_refreshes":
            total += sum(s.value for s in family.samples if s.name.endswith("_total"))
    return total


def _plain_keys(t: Target) -> list[str]:
    """Providers whose API key is written as a value, not a ``secret://`` reference."""
    return sorted(
        name
        for name, provider in t.service.app.providers.items()
        if isinstance(provider.api_key, str) and not is_secret_ref(provider.api_key)
    )


def _sim_models(t: Target) -> list[str]:
    chains = t.service.app.models.values()
    return sorted({m.partition(":")[2] for chain in chains for m in chain if m.startswith("sim:")})


class _Kind:
    """What :func:`secrets_posture` reads of a provider: its kind."""

    def __init__(self, kind: str) -> None:
        self.kind = kind


@check(
    "SE-1",
    criterion="no plaintext secret in config or code; rotation under load fails no call",
    does="scans config and code for secrets; rotates a secret under load",
    estimate_s=20,
)
async def secrets(t: Target) -> Outcome:
    """The posture scan, then the sim's key rotated twice under load on the live node."""
    paths = _app_paths(t)
    posture = await asyncio.to_thread(secrets_posture, _Kind(t.secrets_kind), paths)
    sim = t.service.app.providers.get("sim")
    ref = sim.api_key if sim is not None else None
    plain = _plain_keys(t)
    evidence: dict[str, Any] = {
        "scanned": [str(p) for p in paths],
        **posture,
        "model_key": ref
        if isinstance(ref, str) and is_secret_ref(ref)
        else ("a plain value" if isinstance(ref, str) else None),
        "providers_with_plain_keys": plain,
    }
    if posture["status"] == "fail" or plain:
        return Outcome(
            "failed",
            evidence,
            "move every credential into the secrets provider "
            "and reference it as secret://name (docs/security.md)",
        )
    if t.service.sim is None:
        evidence["rotation_under_load"] = (
            "not exercised: verify rotates the simulated model provider's key, and the app "
            "runs without it (it calls no model, or App.sim is off)"
        )
        return Outcome(
            "partial",
            evidence,
            "the scan found no plaintext secret; a rotation under load was not shown: if the "
            "app's tools use credentials, rotate one in your secrets provider under load and "
            "check no call fails (docs/security.md, Secrets)",
            "no plaintext secret found; rotation not exercised (no model on the simulated "
            "provider)",
        )
    if not isinstance(ref, str) or not is_secret_ref(ref):
        evidence["rotation_under_load"] = "not exercised: the model key is not a secret reference"
        return Outcome(
            "partial",
            evidence,
            "give the model provider its key as a reference, App.providers = {'sim': "
            "Provider(..., api_key='secret://sim-api-key')}, so it can be rotated "
            "(docs/security.md)",
        )
    if not isinstance(t.secrets, LocalVault):
        evidence["rotation_under_load"] = (
            f"not exercised: the {t.secrets.kind} provider cannot change a key while the "
            "agents run (environment variables are read-only to them)"
        )
        return Outcome(
            "partial",
            evidence,
            "keep credentials in the vault or a secrets manager (STALWART_SECRETS=vault or "
            "hashicorp), not in environment variables (docs/security.md)",
        )
    rotation = await _rotate_under_load(t, t.secrets, secret_name(ref))
    evidence["rotation_under_load"] = rotation
    return rotation_outcome(evidence, rotation)


def rotation_outcome(evidence: dict[str, Any], rotation: dict[str, Any]) -> Outcome:
    """SE-1's verdict on a rotation under load (``evidence["rotation_under_load"]``):
    failed when a call failed or an old key was still presented; partial when a rotation
    replaced a key no call had used yet (the load never reached it: replacing a key in
    use was not shown for that rotation); complete otherwise."""
    ok = (
        not rotation["failed_tasks"]
        and rotation["old_keys_presented_after_settle"] == 0
        and rotation["newest_key_requests_after_settle"] > 0
        and rotation["unauthorized_401"] <= rotation["allowed_401"]
    )
    if not ok:
        return Outcome(
            "failed",
            evidence,
            "resolve the key at each request from the secrets provider and re-read it on a "
            "401, so a rotation fails no call (docs/security.md, Secrets)",
        )
    unserved = [r["rotation"] for r in rotation["rotations"] if not r["replaced_key_served"]]
    if unserved:
        return Outcome(
            "partial",
            evidence,
            f"rotation {', '.join(map(str, unserved))} replaced a key that no call had used "
            f"within {ROTATION_WAIT_S:g} s (the machine was too busy for the load to reach "
            "it): run verify again on a less loaded machine",
            "no call failed, but not every rotation replaced a key in use",
        )
    return Outcome("complete", evidence)


async def _rotate_under_load(t: Target, vault: LocalVault, name: str) -> dict[str, Any]:
    """Two rotations (vault and sim together; the sim refuses the old key at once) while
    ``IN_FLIGHT`` tasks run, each finished task replaced by a new one until the rotations
    are done and the newest key has served; then ``LATE_TASKS`` more once they settled."""
    world = t.sim.world
    models = _sim_models(t)
    keys = [vault.get(name)]
    while len(keys) <= ROTATIONS:
        new = "sk-verify-" + base64.urlsafe_b64encode(os.urandom(24)).decode().rstrip("=")
        if new[-6:] not in {k[-6:] for k in keys}:  # the sim counts keys by their last 6
            keys.append(new)
    tags = {k[-6:]: f"key {n}" for n, k in enumerate(keys, 1)}

    def usage() -> dict[str, int]:
        out = {tag: 0 for tag in tags.values()}
        for seen, count in world.keys_seen.items():
            model, _, suffix = seen.rpartition(":")
            if model in models and suffix in tags:
                out[tags[suffix]] += count
        return out

    def unauthorized() -> int:
        return int(sum(world.stats.get(f"{m}:unauthorized", 0) for m in models))

    spenders = [a for a in t.service.app.agents if a.model]
    in_flight_max = sum(a.max_tasks for a in spenders) or 1
    inputs = t.workload(MAX_LOAD_TASKS + LATE_TASKS, seed=1901)
    refused_before, refreshes_before = unauthorized(), _key_refreshes()
    rotations: list[dict[str, Any]] = []
    records: list[TaskRecord] = []
    submitted = 0
    rotating = True
    progressed = asyncio.Condition()
    for m in models:
        world.set_keys(m, [keys[0]])

    async def keep_loaded() -> None:
        """One of ``IN_FLIGHT`` closed loops: a task, and when it ends the next one."""
        nonlocal submitted
        while rotating and submitted < MAX_LOAD_TASKS:
            n = submitted
            submitted += 1
            [record] = await t.run_all([inputs[n]], prefix=f"se1-{n:04d}")
            records.append(record)
            async with progressed:
                progressed.notify_all()

    def key_served(n: int) -> Callable[[], bool]:
        return lambda: usage()[tags[keys[n][-6:]]] > 0

    async def rotate() -> None:
        nonlocal rotating
        try:
            for n in range(1, ROTATIONS + 1):
                # (bounded: once the load has sent its most, no more tasks will end)
                at = min(len(records) + TASKS_PER_KEY, MAX_LOAD_TASKS)
                async with progressed:
                    await progressed.wait_for(lambda: len(records) >= at)  # noqa: B023
                # and the key in use has served its time (tasks finish in bursts on a
                # busy machine; the load goes on meanwhile)
                served = await until(key_served(n - 1), timeout=ROTATION_WAIT_S)
                vault.rotate(name, keys[n])
                for m in models:
                    world.set_keys(m, [keys[n]])  # the old key is refused from now on
                rotations.append(
                    {
                        "rotation": n,
                        "after_tasks_done": len(records),
                        "tasks_not_done": submitted - len(records),
                        # whether the key it replaced had served a call (the evidence says
                        # so when the wait ran out: that key's rotation was not exercised)
                        "replaced_key_served": served,
                    }
                )
            await until(key_served(ROTATIONS), timeout=ROTATION_WAIT_S)
        finally:
            rotating = False  # the loops end with their current tasks

    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(rotate())
            for _ in range(IN_FLIGHT):
                tg.create_task(keep_loaded())
        load_tasks = len(records)
        settled = usage()
        records += await t.run_all(inputs[MAX_LOAD_TASKS:], prefix="se1-late")
        final = usage()
        refused = unauthorized() - refused_before
        # the agents ship their counters with their heartbeats: wait (bounded) for the
        # refreshes that answered the 401s to reach the node
        await until(lambda: _key_refreshes() - refreshes_before >= refused, timeout=5)
    finally:
        for m in models:
            world.set_keys(m, None)  # later checks call the sim with keys of their own
    failed = [
        {"task": r.id, "status": r.status, "outcome": str(r.outcome)[:200]}
        for r in records
        if r.status != "succeeded" or (r.outcome or {}).get("status") == "failed"
    ]
    return {
        "secret": f"secret://{name}",
        "models": models,
        "rotations": rotations,
        "tasks": len(records),
        "tasks_under_load": load_tasks,
        "tasks_after_settle": LATE_TASKS,
        "failed_tasks": failed,
        "unauthorized_401": refused,
        "allowed_401": ROTATIONS * in_flight_max,
        "key_refreshes_retried": round(_key_refreshes() - refreshes_before),
        "key_usage": final,
        "old_keys_presented_after_settle": sum(
            final[tag] - settled[tag] for tag in list(tags.values())[:-1]
        ),
        "newest_key_requests_after_settle": final[tags[keys[-1][-6:]]]
        - settled[tags[keys[-1][-6:]]],
    }


CANARY_SEED = 313
"""The workload seed of SE-3's task inputs."""


def canary_inputs(base: Any, text: str) -> tuple[list[Any], str]:
    """SE-3's task inputs: the workload input ``base`` with the canary ``text`` as its
    message (the longest string field, preferring one of several words; a string input is
    the message itself), and with ``text`` added after the message, the other fields the
    app needs (a customer id, say) kept; and where the canaries went. A dict with no string
    field gets them in a ``text`` field; any other input carries none (``[]``)."""
    if isinstance(base, str):
        return [text, f"{base}\n{text}"], "the input (a string)"
    if not isinstance(base, dict):
        return [], f"no field: the workload's inputs are {type(base).__name__}s"
    strings = [k for k, v in base.items() if isinstance(v, str)]
    words = [k for k in strings if " " in base[k].strip()]
    pool = words or strings
    if not pool:
        return [{**base, "text": text}], "a 'text' field added (the input has no string field)"
    key = max(pool, key=lambda k: len(base[k]))
    return [{**base, key: text}, {**base, key: f"{base[key]}\n{text}"}], f"field {key!r}"


@check(
    "SE-3",
    criterion="no canary PII or credential in any output, log, event or error; scopes minimal",
    does="seeds canary PII and credentials and greps every output",
    estimate_s=20,
)
async def no_leaks_and_least_privilege(t: Target) -> Outcome:
    table = scope_table(t.service.app.agents)
    excess = {row["agent"]: row["excess"] for row in table if row["excess"]}
    # a workload input carrying the canaries, as its message and after it: the simulated
    # model echoes a message it has no rule for, so without redaction they would come
    # straight back in the answer, the logs and the events
    text = (
        f"My details: card {CANARIES['card']}, SSN {CANARIES['ssn']}, mail "
        f"{CANARIES['email']}, key {CANARIES['aws_key']}, token {CANARIES['github_token']}"
    )
    [base] = t.workload(1, seed=CANARY_SEED)
    inputs, seeded_in = canary_inputs(base, text)
    if not inputs:
        raise NotExercised(
            f"SE-3 seeds its canaries in the workload's task inputs, and these have no place "
            f"for text ({seeded_in})",
            fix="make the workload return task inputs as dicts or strings",
        )
    records = await t.run_all(inputs, prefix="se3")
    await asyncio.sleep(1.5)  # log batches reach the store
    places: dict[str, str] = {}
    places["task outputs"] = " ".join(str(r.outcome) for r in records)
    async with httpx.AsyncClient(timeout=10) as http:
        places["log store"] = (
            await http.get(f"{t.http.url}/v1/logs", params={"limit": 10000})
        ).text
        places["metrics"] = (await http.get(f"{t.http.url}/metrics")).text
    places["events"] = " ".join(str(e.fields) for e in t.seen)
    node_log = t.workdir.parent / "node.log"
    if node_log.exists():
        places["node log"] = await asyncio.to_thread(node_log.read_text)
    hits: dict[str, list[str]] = {}
    for where, blob in places.items():
        found = [
            name
            for name, value in CANARIES.items()
            if value in blob or value.replace(" ", "") in blob
        ]
        if found:
            hits[where] = found
    evidence: dict[str, Any] = {
        "canaries": list(CANARIES),
        "seeded_in": f"{len(inputs)} workload input(s) (seed {CANARY_SEED}): {seeded_in}",
        "places_searched": list(places),
        "canary_hits": hits,
        "scope_table": table,
        "excess_scopes": excess,
        "task_status": [r.status for r in records],
        # the canaries did reach the output (echoed by the model), and came out redacted
        "redacted_in_output": "[REDACTED" in places["task outputs"],
    }
    measured = (
        f"canary hits: {sum(len(v) for v in hits.values())}; "
        f"excess scopes: {len(excess)}; canaries echoed and redacted in the output: "
        f"{evidence['redacted_in_output']}"
    )
    if not hits and not excess and evidence["redacted_in_output"]:
        return Outcome("complete", evidence, measured=measured)
    if not hits and not excess:
        # nothing leaked, but nothing reached an output either: redaction not exercised
        return Outcome(
            "partial",
            evidence,
            "no canary leaked, but the task never carried the seeded values into its output "
            f"(task status: {', '.join(evidence['task_status'])}), so redaction itself was "
            "not shown: make the workload's entry agent answer with what it was given",
            measured,
        )
    return Outcome(
        "failed",
        evidence,
        "redact outputs, logs and events before they are written, "
        "and grant each agent only the scopes its tools need (docs/security.md)",
        measured,
    )


@check(
    "SE-2",
    criterion=(
        "zero unauthorized tool calls executed from the injection corpus; malformed inputs "
        "refused clearly"
    ),
    does="sends the injection corpus through user input and tool results",
    estimate_s=60,
    timeout=lambda: RED_TEAM_TIMEOUT_S + 60,
)
async def injections_and_inputs(t: Target) -> Outcome:
    """Hostile inputs refused with clear errors; the injection corpus with an obedient model."""
    from stalwart.errors import InputRejected

    hostile = {
        "null bytes": {"text": "hi\x00there"},
        "deep nesting": _deep(200),
        "huge": {"text": "x" * 2_000_000},
        "tag smuggling": {"text": "help \U000e0069\U000e0067\U000e006e please"},
    }
    refused: dict[str, str] = {}
    for name, value in hostile.items():
        try:
            task_id = await t.tasks.submit(t.entry, value, task_id=f"se2-{name.replace(' ', '-')}")
        except InputRejected as exc:
            refused[name] = f"refused: {str(exc)[:160]}"
            continue
        stored = await t.tasks.get(task_id)
        text = str(stored.input if stored is not None else value)
        clean = "\x00" not in text and not any(0xE0000 <= ord(c) <= 0xE007F for c in text)
        refused[name] = "accepted, normalized" if clean else "accepted as is"
    app = t.service.app
    evidence: dict[str, Any] = {"hostile_inputs": refused}
    entry = app.agent(app.entry_agent)
    if app.redteam:
        run = load_ref(app.redteam, "red-team hook")
        result = await run(tool_result_share=0.25, benign=20)
        evidence["red_team"] = f"the app's hook {app.redteam}"
    elif not (app.workload and entry.model) or entry.agents:
        evidence["why"] = (
            f"the entry agent {entry.name!r} hands tasks over to {list(entry.agents)}: the "
            "generic red team runs one agent"
            if entry.agents
            else "the generic red team needs a workload and an entry agent that calls a model"
        )
        return Outcome(
            "partial",
            evidence,
            "give the app a red-team hook (App.redteam) so the injection corpus can run "
            "against it (or a workload for an entry agent with a model chain: the generic "
            "red team drives it, docs/security.md)",
        )
    else:
        result = await _generic_red_team(t.app_ref)
        evidence["red_team"] = (
            "stalwart.chaos.red_team: the corpus in the app's workload inputs and in its "
            "entry agent's tool results, against its own guard"
        )
        if result["controls_completed"] < 0.9:  # the red team could not run the app itself
            evidence["redteam"] = result
            evidence["why"] = (
                f"only {result['controls_completed']:.0%} of the workload inputs completed "
                "without payloads and without the guard: the red team could not drive the app"
            )
            return Outcome(
                "not-run",
                evidence,
                "make the workload's inputs complete on the entry agent with the simulated "
                "models, or give the app a red-team hook (App.redteam)",
            )
    evidence["redteam"] = result
    handled = all(v != "accepted as is" for v in refused.values())
    ok = (
        result["unauthorized_tool_calls"] == 0
        and result["injection_payloads"] >= 200
        and result["benign_completion_rate"] >= 0.9
        and handled
    )
    measured = (
        f"unauthorized tool calls: {result['unauthorized_tool_calls']} "
        f"({result['injection_payloads']} payloads, {result.get('attack_runs', '?')} attack "
        f"runs); benign completion {result['benign_completion_rate']:.0%}; hostile inputs "
        f"handled: {sum(v != 'accepted as is' for v in refused.values())}/{len(refused)}"
    )
    if ok:
        return Outcome("complete", evidence, measured=measured)
    return Outcome(
        "failed",
        evidence,
        "authorize every tool call at the runtime (scopes and "
        "taint), and validate inputs (docs/security.md)",
        measured,
    )


async def _generic_red_team(app_ref: str) -> dict[str, Any]:
    """:func:`stalwart.chaos.red_team` on ``app_ref``, in a process of its own: this one's
    environment switches tools to verify's doubles and blocks, which a red team's own
    stand-ins must not go through (nor add to SM-4's delivery records)."""
    env = {k: v for k, v in os.environ.items() if k not in VERIFY_ENV}
    env["PYTHONPATH"] = os.pathsep.join([os.getcwd(), *filter(None, [env.get("PYTHONPATH")])])
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "stalwart.chaos._redteam", app_ref, "--share", "0.25",
        "--benign", "20", env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        async with asyncio.timeout(RED_TEAM_TIMEOUT_S):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    if proc.returncode != 0:
        raise RuntimeError(
            f"the red team exited {proc.returncode}: {err.decode(errors='replace')[-2000:]}"
        )
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


def _deep(n: int) -> Any:
    value: Any = "bottom"
    for _ in range(n):
        value = {"a": value}
    return value
