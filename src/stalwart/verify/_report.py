"""The readiness report: Markdown, HTML and JSON, and what changed since a baseline.

The HTML report (``readiness.html``) is one self-contained file: no script, no external
asset. It shows the verdict, the counts by status and by level, and the item table
(``<tr data-id='..' data-status='..' data-level='..'>``, coloured by status), each item
with its remediation, its evidence collapsed, and, when the evidence carries them:

Charts -- ``evidence["chart"]``, one chart or a list of them, drawn as inline SVG::

    evidence["chart"] = {
        "kind": "bars",                   # "bars": grouped bars per x; "lines": a line per series
        "title": "LC-1: latency per load level",
        "x": ["1x", "2x", "3x"],          # categories (bars), or x values (lines: numbers are
                                          # placed to scale, e.g. seconds since start)
        "series": {"p50": [0.2, 0.3, 0.5], "p95": [...], "p99": [...]},  # one value per x;
                                          # None leaves a gap
        "unit": "s",                      # of the values (the y axis)
        "x_unit": "s since start",        # optional, lines only
    }

e.g. LC-1's per-level latency percentiles (bars) and error rates (a second chart), LC-3's
sampled series (lines, x = seconds into the soak). The ``chart`` key is left out of the
evidence JSON shown under the chart (it is in readiness.json).

Screenshots -- ``evidence["screenshot"]``, a PNG file name in the report directory
(MA-4 writes ``ma4-dashboard.png``), embedded in the HTML as a data URI.
"""

from __future__ import annotations

import base64
import html
import json
import math
import pathlib
from typing import Any

from stalwart.verify._model import ItemResult

__all__ = ["chart_svg", "compare", "summarize", "write_reports"]

_MARK = {"complete": "✅", "partial": "🟡", "not-run": "⚪", "failed": "❌"}


def summarize(results: list[ItemResult]) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    critical_failed = [r.id for r in results if r.level == "critical" and r.status == "failed"]
    critical_open = [r.id for r in results if r.level == "critical" and r.status != "complete"]
    return {
        "counts": counts,
        "critical_failed": critical_failed,
        "critical_not_complete": critical_open,
        "ready": not critical_open,
        "not_run": {r.id: str(r.evidence.get("why", "")) for r in results if r.status == "not-run"},
        "items": len(results),
    }


def compare(results: list[ItemResult], baseline: dict[str, Any]) -> list[dict[str, Any]]:
    """Items whose status changed since ``baseline`` (a previous readiness.json)."""
    before = {i["id"]: i["status"] for i in baseline.get("items", [])}
    order = ["failed", "not-run", "partial", "complete"]
    changes = []
    for r in results:
        old = before.get(r.id)
        if old != r.status:
            known = old in order
            worse = known and order.index(r.status) < order.index(str(old))
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
        "| id | level | status | item | criterion | measured | evidence | remediation |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        evidence = json.dumps({k: v for k, v in r.evidence.items() if k != "chart"}, default=str)
        if len(evidence) > 300:
            evidence = evidence[:297] + "…"
        lines.append(
            f"| {r.id} | {r.level} | {_MARK[r.status]} {r.status} | {r.title} | "
            f"{r.criterion.replace('|', '/')} | {r.measured.replace('|', '/')} | "
            f"`{evidence.replace('|', '/')}` | {r.remediation or ''} |"
        )
    shots = [r for r in results if isinstance(r.evidence.get("screenshot"), str)]
    for r in shots:
        lines += ["", f"{r.id}: ![{r.id} screenshot]({r.evidence['screenshot']})"]
    if changes is not None:
        lines += ["", "## Changes since the baseline", ""]
        if not changes:
            lines.append("No item changed.")
        for c in changes:
            tag = " (regression)" if c["regression"] else ""
            lines.append(f"- {c['id']}: {c['from']} → {c['to']}{tag}")
    lines += ["", "Full evidence: `readiness.json`."]
    return "\n".join(lines) + "\n"


_COLOURS = {
    "complete": ("#1a7f37", "#dafbe1"),
    "partial": ("#9a6700", "#fff8c5"),
    "not-run": ("#57606a", "#eaeef2"),
    "failed": ("#cf222e", "#ffebe9"),
}
"""Each status's (text, background) colour."""
_PALETTE = ("#0969da", "#bf3989", "#1a7f37", "#9a6700", "#8250df", "#cf222e", "#57606a")
_W, _H = 560, 230
_LEFT, _RIGHT, _TOP, _BOTTOM = 56, 12, 28, 46


def _charts(evidence: dict[str, Any]) -> list[dict[str, Any]]:
    raw = evidence.get("chart")
    items = raw if isinstance(raw, list) else [raw] if raw is not None else []
    return [c for c in items if isinstance(c, dict)]


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _nice(raw: float) -> float:
    """The round number (1, 2, 2.5 or 5 times a power of ten) at or above ``raw``."""
    if raw <= 0:
        return 1.0
    step = 10.0 ** math.floor(math.log10(raw))
    for m in (1.0, 2.0, 2.5, 5.0, 10.0):
        if m * step >= raw * (1 - 1e-9):
            return m * step
    return 10 * step


def _fmt(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def chart_svg(chart: dict[str, Any]) -> str:
    """One ``evidence["chart"]`` as an inline SVG (see the module docstring for the shape).

    Malformed charts render as a short note rather than failing the report.
    """
    kind = chart.get("kind", "bars")
    x = list(chart.get("x") or [])
    series = chart.get("series") if isinstance(chart.get("series"), dict) else {}
    assert isinstance(series, dict)
    title = html.escape(str(chart.get("title", "")))
    unit = html.escape(str(chart.get("unit", "")))
    values = [
        [_num(v) for v in (list(vs) if isinstance(vs, list | tuple) else [])][: len(x)]
        for vs in series.values()
    ]
    finite = [v for vs in values for v in vs if v is not None]
    if kind not in ("bars", "lines") or not x or not finite:
        return f"<p class='nochart'>chart {title or kind}: no numeric data</p>"
    low = min(0.0, *finite)
    step = _nice((max(*finite, 0.0) - low) / 4 or 1.0)  # about four round gridlines
    low = step * math.floor(low / step)
    ticks = max(1, math.ceil((max(finite) - low) / step - 1e-9))
    span = step * ticks
    # bar labels too long for their slot are drawn slanted, below a shorter plot
    slanted = kind == "bars" and max(len(str(v)) for v in x) * 6.0 > (_W - _LEFT - _RIGHT) / len(x)
    height = _H + (60 if slanted else 0)
    plot_w, plot_h = _W - _LEFT - _RIGHT, height - _TOP - _BOTTOM - (60 if slanted else 0)

    def y(v: float) -> float:
        return _TOP + plot_h * (1 - (v - low) / span)

    parts = [
        f"<svg class='chart' role='img' xmlns='http://www.w3.org/2000/svg' width='{_W}' "
        f"height='{height}' viewBox='0 0 {_W} {height}' aria-label='{title}'>",
        f"<text x='{_LEFT}' y='16' class='t'>{title}</text>",
    ]
    for k in range(ticks + 1):  # gridlines and y labels
        v = low + step * k
        parts.append(
            f"<line x1='{_LEFT}' x2='{_W - _RIGHT}' y1='{y(v):.1f}' y2='{y(v):.1f}' class='g'/>"
            f"<text x='{_LEFT - 6}' y='{y(v) + 4:.1f}' class='yl'>{_fmt(v)}</text>"
        )
    parts.append(
        f"<text x='12' y='{_TOP + plot_h / 2:.0f}' class='u' "
        f"transform='rotate(-90 12 {_TOP + plot_h / 2:.0f})'>{unit}</text>"
    )
    names = [html.escape(str(n)) for n in series]
    if kind == "bars":
        slot = plot_w / len(x)
        width = max(1.0, slot * 0.8 / max(1, len(values)))
        for i, label in enumerate(x):
            cx = _LEFT + slot * (i + 0.5)
            for s, vs in enumerate(values):
                bar = vs[i] if i < len(vs) else None
                if bar is None:
                    continue
                bx = cx - width * len(values) / 2 + width * s
                tip = f"{names[s]} {html.escape(str(label))}: {_fmt(bar)} {unit}"
                top_y, base_y = y(max(bar, 0.0)), y(min(bar, 0.0))
                parts.append(
                    f"<rect x='{bx:.1f}' y='{top_y:.1f}' width='{width:.1f}' "
                    f"height='{max(0.5, base_y - top_y):.1f}' fill='{_PALETTE[s % len(_PALETTE)]}'>"
                    f"<title>{tip}</title></rect>"
                )
            ly = _TOP + plot_h + 14
            turn = (
                f" transform='rotate(-35 {cx:.1f} {ly})' style='text-anchor:end'" if slanted else ""
            )
            parts.append(
                f"<text x='{cx:.1f}' y='{ly}' class='xl'{turn}>"
                f"{html.escape(str(label))[:24]}</text>"
            )
    else:
        xs = [_num(v) for v in x]
        numeric = all(v is not None for v in xs) and len(x) > 1
        lo_x = min(v for v in xs if v is not None) if numeric else 0.0
        hi_x = max(v for v in xs if v is not None) if numeric else float(len(x) - 1)
        width_x = (hi_x - lo_x) or 1.0

        def px(i: int) -> float:
            pos = (xs[i] or 0.0) - lo_x if numeric else float(i)
            return _LEFT + plot_w * pos / width_x

        for s, vs in enumerate(values):
            points = " ".join(f"{px(i):.1f},{y(v):.1f}" for i, v in enumerate(vs) if v is not None)
            colour = _PALETTE[s % len(_PALETTE)]
            parts.append(
                f"<polyline points='{points}' fill='none' stroke='{colour}' stroke-width='2'>"
                f"<title>{names[s]}</title></polyline>"
            )
            if len(vs) <= 40:
                parts += [
                    f"<circle cx='{px(i):.1f}' cy='{y(v):.1f}' r='2.5' fill='{colour}'/>"
                    for i, v in enumerate(vs)
                    if v is not None
                ]
        labelled: list[int] = (
            sorted({round(k * (len(x) - 1) / 5) for k in range(6)})
            if len(x) > 6
            else list(range(len(x)))
        )
        for i in labelled:
            parts.append(
                f"<text x='{px(i):.1f}' y='{_TOP + plot_h + 14}' class='xl'>"
                f"{html.escape(str(x[i]))[:12]}</text>"
            )
        if chart.get("x_unit"):
            parts.append(
                f"<text x='{_LEFT + plot_w / 2:.0f}' y='{_TOP + plot_h + 28}' class='xl'>"
                f"{html.escape(str(chart['x_unit']))}</text>"
            )
    for s, name in enumerate(names):  # the legend, along the bottom
        lx = _LEFT + s * 150
        parts.append(
            f"<rect x='{lx}' y='{height - 12}' width='10' height='10' "
            f"fill='{_PALETTE[s % len(_PALETTE)]}'/>"
            f"<text x='{lx + 14}' y='{height - 3}' class='lg'>{name[:22]}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _screenshot(out: pathlib.Path | None, evidence: dict[str, Any]) -> str:
    """The item's screenshot (a PNG beside the report) embedded as a data URI."""
    name = evidence.get("screenshot")
    if out is None or not isinstance(name, str) or "/" in name or "\\" in name:
        return ""
    path = out / name
    if not path.is_file():
        return ""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (
        f"<figure><img class='shot' alt='screenshot {html.escape(name)}' "
        f"src='data:image/png;base64,{data}'><figcaption>{html.escape(name)}</figcaption></figure>"
    )


def _html(
    results: list[ItemResult],
    summary: dict[str, Any],
    meta: dict[str, Any],
    changes: list[dict[str, Any]] | None,
    out: pathlib.Path | None = None,
) -> str:
    statuses = list(_COLOURS)
    rows = []
    for r in results:
        fg, bg = _COLOURS[r.status]
        shown = "".join(chart_svg(c) for c in _charts(r.evidence)) + _screenshot(out, r.evidence)
        body = {k: v for k, v in r.evidence.items() if k != "chart"}
        rows.append(
            f"<tr data-id='{r.id}' data-status='{r.status}' data-level='{r.level}' "
            f"style='background:{bg}'><td class='id'>{r.id}</td><td>{r.level}</td>"
            f"<td><span class='st' style='background:{fg}'>{r.status}</span></td>"
            f"<td>{html.escape(r.title)}<div class='sec'>{r.seconds:.1f} s</div></td>"
            f"<td class='crit'>{html.escape(r.criterion)}</td>"
            f"<td class='meas'>{html.escape(r.measured)}</td>"
            f"<td class='ev'>{shown}<details><summary>evidence</summary><pre>"
            f"{html.escape(json.dumps(body, indent=2, default=str))}</pre></details></td>"
            f"<td class='fix'>{html.escape(r.remediation or '')}</td></tr>"
        )
    counts = summary["counts"]
    bars = "".join(
        f"<div style='flex:{counts.get(s, 0)};background:{_COLOURS[s][0]}' title='{s}: "
        f"{counts.get(s, 0)}'></div>"
        for s in statuses
        if counts.get(s, 0)
    )
    chips = "".join(
        f"<span class='chip' style='background:{_COLOURS[s][1]};color:{_COLOURS[s][0]}'>"
        f"<b>{counts.get(s, 0)}</b> {s.replace('_', ' ')}</span>"
        for s in statuses
    )
    by_level = "".join(
        f"<tr><th>{level}</th>"
        + "".join(
            f"<td>{sum(1 for r in results if r.level == level and r.status == s)}</td>"
            for s in statuses
        )
        + "</tr>"
        for level in ("critical", "recommended")
    )
    change_list = "".join(
        f"<li>{c['id']}: {c['from']} → {c['to']}{' (regression)' if c['regression'] else ''}</li>"
        for c in changes or []
    )
    blocking = summary.get("critical_not_complete") or []
    verdict = "ready" if summary["ready"] else "not ready"
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>stalwart readiness: {verdict}</title><style>
body{{font-family:system-ui,sans-serif;margin:2rem;color:#1f2328;max-width:1400px}}
h1{{margin:0 0 .3rem}} .verdict{{padding:.1rem .6rem;border-radius:1rem;color:#fff;
background:{"#1a7f37" if summary["ready"] else "#cf222e"}}}
table{{border-collapse:collapse}} #items{{width:100%}}
td,th{{border:1px solid #d0d7de;padding:.4rem;vertical-align:top;text-align:left}}
#items td.id{{font-weight:600;white-space:nowrap}} .sec{{color:#57606a;font-size:.8rem}}
.st{{color:#fff;border-radius:1rem;padding:.05rem .55rem;font-size:.85rem;white-space:nowrap}}
.chip{{display:inline-block;border-radius:1rem;padding:.2rem .7rem;margin:.2rem .3rem .2rem 0}}
.fix{{font-weight:500;max-width:32ch}} pre{{white-space:pre-wrap;max-width:80ch;font-size:.8rem}}
.bar{{display:flex;height:1.2rem;border-radius:4px;overflow:hidden;margin:1rem 0}}
#levels td,#levels th{{text-align:center;min-width:6rem}}
svg.chart{{display:block;background:#fff;border:1px solid #d0d7de;border-radius:6px;
margin:.3rem 0;max-width:100%;height:auto}}
svg .t{{font-size:12px;font-weight:600}} svg .g{{stroke:#d0d7de;stroke-width:1}}
svg .yl{{font-size:10px;text-anchor:end;fill:#57606a}} svg .xl{{font-size:10px;
text-anchor:middle;fill:#57606a}} svg .lg,svg .u{{font-size:10px;fill:#1f2328}}
img.shot{{max-width:480px;width:100%;border:1px solid #d0d7de;border-radius:6px}}
figure{{margin:.3rem 0}} figcaption{{font-size:.75rem;color:#57606a}}
</style></head><body>
<h1>Production readiness: <span class="verdict">{verdict}</span></h1>
<p>App <code>{html.escape(str(meta.get("app")))}</code> &middot; {meta.get("started")} &middot;
{meta.get("seconds", 0):.0f} s &middot; {summary.get("items", len(results))} items</p>
<div id="counts">{chips}</div>
<div class="bar">{bars}</div>
<table id="levels"><thead><tr><th>level</th>{"".join(f"<th>{s}</th>" for s in statuses)}
</tr></thead><tbody>{by_level}</tbody></table>
<p>{
        "Critical items not complete: " + ", ".join(blocking)
        if blocking
        else "Every critical item is complete."
    }</p>
<table id="items"><thead><tr><th>id</th><th>level</th><th>status</th><th>item</th>
<th>complete when</th><th>measured</th><th>evidence</th><th>remediation</th></tr></thead><tbody>
{chr(10).join(rows)}
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
    (out / "readiness.html").write_text(_html(results, summary, meta, changes, out))
    return document
