"""The readiness report: Markdown, HTML and JSON, and what changed since a baseline."""

from __future__ import annotations

import html
import json
import pathlib
from typing import Any

from stalwart.verify._model import ItemResult

__all__ = ["compare", "summarize", "write_reports"]

_MARK = {"complete": "✅", "partial": "🟡", "not_applicable": "⚪", "failed": "❌"}


def summarize(results: list[ItemResult]) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    critical_failed = [r.id for r in results if r.level == "critical" and r.status == "failed"]
    critical_open = [
        r.id
        for r in results
        if r.level == "critical" and r.status not in ("complete", "not_applicable")
    ]
    return {
        "counts": counts,
        "critical_failed": critical_failed,
        "critical_not_complete": critical_open,
        "ready": not critical_open,
        "items": len(results),
    }


def compare(results: list[ItemResult], baseline: dict[str, Any]) -> list[dict[str, Any]]:
    """Items whose status changed since ``baseline`` (a previous readiness.json)."""
    before = {i["id"]: i["status"] for i in baseline.get("items", [])}
    order = ["failed", "partial", "not_applicable", "complete"]
    changes = []
    for r in results:
        old = before.get(r.id)
        if old != r.status:
            worse = old is not None and order.index(r.status) < order.index(old)
            changes.append({"id": r.id, "from": old, "to": r.status, "regression": worse})
    return changes


def _md(
    results: list[ItemResult],
    summary: dict[str, Any],
    meta: dict[str, Any],
    changes: list[dict[str, Any]] | None,
) -> str:
    lines = [
        "# Production readiness report",
        "",
        f"App `{meta.get('app')}`, {meta.get('started')} ({meta.get('seconds', 0):.0f} s). "
        f"Ready for production: **{'yes' if summary['ready'] else 'no'}**.",
        "",
        "| id | level | status | item | evidence | remediation |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        evidence = json.dumps(r.evidence, default=str)
        if len(evidence) > 300:
            evidence = evidence[:297] + "…"
        lines.append(
            f"| {r.id} | {r.level} | {_MARK[r.status]} {r.status} | {r.title} | "
            f"`{evidence.replace('|', '/')}` | {r.remediation or ''} |"
        )
    if changes is not None:
        lines += ["", "## Changes since the baseline", ""]
        if not changes:
            lines.append("No item changed.")
        for c in changes:
            tag = " (regression)" if c["regression"] else ""
            lines.append(f"- {c['id']}: {c['from']} → {c['to']}{tag}")
    lines += ["", "Full evidence: `readiness.json`."]
    return "\n".join(lines) + "\n"


def _html(
    results: list[ItemResult],
    summary: dict[str, Any],
    meta: dict[str, Any],
    changes: list[dict[str, Any]] | None,
) -> str:
    colours = {
        "complete": "#1a7f37",
        "partial": "#9a6700",
        "not_applicable": "#57606a",
        "failed": "#cf222e",
    }
    rows = "\n".join(
        f"<tr data-id='{r.id}' data-status='{r.status}'><td>{r.id}</td><td>{r.level}</td>"
        f"<td style='color:{colours[r.status]};font-weight:600'>{r.status}</td>"
        f"<td>{html.escape(r.title)}</td><td><details><summary>evidence</summary><pre>"
        f"{html.escape(json.dumps(r.evidence, indent=2, default=str))}</pre></details></td>"
        f"<td>{html.escape(r.remediation or '')}</td></tr>"
        for r in results
    )
    counts = summary["counts"]
    bars = "".join(
        f"<div style='flex:{counts.get(s, 0)};background:{colours[s]}' title='{s}: "
        f"{counts.get(s, 0)}'></div>"
        for s in colours
        if counts.get(s, 0)
    )
    change_list = "".join(
        f"<li>{c['id']}: {c['from']} → {c['to']}{' (regression)' if c['regression'] else ''}</li>"
        for c in changes or []
    )
    return f"""<!doctype html><html><head><meta charset="utf-8">
<title>stalwart readiness</title><style>
body{{font-family:system-ui,sans-serif;margin:2rem;color:#1f2328}}
table{{border-collapse:collapse;width:100%}}td,th{{border:1px solid #d0d7de;padding:.4rem;
vertical-align:top;text-align:left}}pre{{white-space:pre-wrap;max-width:60ch}}
.bar{{display:flex;height:1.2rem;border-radius:4px;overflow:hidden;margin:1rem 0}}
</style></head><body>
<h1>Production readiness: {"ready" if summary["ready"] else "not ready"}</h1>
<p>App <code>{html.escape(str(meta.get("app")))}</code> &middot; {meta.get("started")} &middot;
{meta.get("seconds", 0):.0f} s &middot; {", ".join(f"{k}: {v}" for k, v in counts.items())}</p>
<div class="bar">{bars}</div>
<table id="items"><thead><tr><th>id</th><th>level</th><th>status</th><th>item</th>
<th>evidence</th><th>remediation</th></tr></thead><tbody>
{rows}
</tbody></table>
{"<h2>Changes since the baseline</h2><ul>" + change_list + "</ul>" if changes is not None else ""}
</body></html>
"""


def write_reports(
    out: pathlib.Path,
    results: list[ItemResult],
    meta: dict[str, Any],
    baseline: dict[str, Any] | None,
) -> dict[str, Any]:
    """Write readiness.md, .html and .json into ``out``; return the JSON document."""
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(results)
    changes = compare(results, baseline) if baseline is not None else None
    document = {"items": [r.as_json() for r in results], "summary": summary, "meta": meta}
    if changes is not None:
        document["changes"] = changes
    (out / "readiness.json").write_text(json.dumps(document, indent=2, default=str) + "\n")
    (out / "readiness.md").write_text(_md(results, summary, meta, changes))
    (out / "readiness.html").write_text(_html(results, summary, meta, changes))
    return document
