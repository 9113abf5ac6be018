"""The HTML readiness report, rendered in headless Chromium: its item table matches
readiness.json, its charts are drawn from the evidence, the screenshot is embedded, and
it loads nothing from anywhere. A screenshot of the rendered report is saved."""

from __future__ import annotations

import json
import os
import shutil
import struct
import zlib

import pytest

from stalwart.verify._model import ItemResult
from stalwart.verify._report import chart_svg, write_reports

pytestmark = pytest.mark.timeout(90)


def _png(width: int, height: int) -> bytes:
    """A small solid PNG (the stand-in for MA-4's dashboard screenshot)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    rows = b"".join(b"\x00" + b"\x30\x80\xd0" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def _results() -> list[ItemResult]:
    lc1 = {
        "levels": ["1x", "2x", "3x"],
        "chart": [
            {
                "kind": "bars",
                "title": "LC-1: latency per load level",
                "x": ["1x", "2x", "3x"],
                "series": {
                    "p50": [0.21, 0.3, 0.52],
                    "p95": [0.5, 0.8, 1.4],
                    "p99": [0.7, 1.1, 2.2],
                },
                "unit": "s",
            },
            {
                "kind": "bars",
                "title": "LC-1: error rate per load level",
                "x": ["1x", "2x", "3x"],
                "series": {"error_rate": [0.0, 0.01, 0.04]},
                "unit": "share",
            },
        ],
    }
    lc3 = {
        "chart": {
            "kind": "lines",
            "title": "LC-3: resident memory over the soak",
            "x": list(range(0, 300, 10)),
            "series": {
                "resolver": [50 + 0.1 * i for i in range(30)],
                "triage": [40 + i % 3 for i in range(29)] + [None],
            },
            "unit": "MiB",
            "x_unit": "s since start",
        }
    }
    return [
        ItemResult("PA-1", "critical", "isolated process per agent", "complete", {"pids": {}}),
        ItemResult("MA-4", "critical", "live health dashboard", "complete",
                   {"screenshot": "ma4-dashboard.png", "first_paint_ms": 412.0}),
        ItemResult("SE-1", "critical", "secrets <in> a manager", "failed", {"findings": 2},
                   "move every credential into the secrets provider", 1.5,
                   criterion="no plaintext secret in config or code", measured="2 findings"),
        ItemResult("GD-3", "recommended", "degradation alerted", "not-run", {}),
        ItemResult("LC-1", "recommended", "load at 2-3x average", "partial", lc1,
                   "shed load before latency passes its bound"),
        ItemResult("LC-3", "recommended", "soak test", "complete", lc3),
    ]  # fmt: skip


def test_charts_tolerate_missing_and_malformed_data():
    assert "no numeric data" in chart_svg({"kind": "bars", "x": [], "series": {}})
    assert "no numeric data" in chart_svg({"kind": "pie", "x": ["a"], "series": {"s": [1]}})
    svg = chart_svg({"kind": "bars", "x": ["a", "b"], "series": {"s": [None, "x"]}})
    assert "no numeric data" in svg
    svg = chart_svg({"kind": "lines", "x": ["a", "b"], "series": {"s": [1, -2]}, "unit": "<u>"})
    assert svg.startswith("<svg") and "&lt;u&gt;" in svg and "<polyline" in svg


@pytest.mark.skipif(
    shutil.which("chromium") is None and not os.environ.get("STALWART_CHROMIUM"),
    reason="needs a Chromium (Debian: apt-get install chromium)",
)
async def test_the_report_renders_in_chromium_as_readiness_json_says(tmp_path):
    from playwright.async_api import async_playwright

    from stalwart.verify._checks_dashboard import CHROMIUM_ARGS, chromium_path

    (tmp_path / "ma4-dashboard.png").write_bytes(_png(64, 40))
    meta = {"app": "examples.helpdesk.app:app", "started": "2026-01-01T00:00:00+00:00",
            "seconds": 12.0, "only": []}  # fmt: skip
    document = write_reports(tmp_path, _results(), meta, baseline=None)
    on_disk = json.loads((tmp_path / "readiness.json").read_text())
    assert on_disk["items"] == document["items"]
    requests: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True, timeout=30_000
        )
        try:
            page = await browser.new_page(viewport={"width": 1300, "height": 900})
            page.on("request", lambda r: requests.append(r.url))
            await page.goto((tmp_path / "readiness.html").as_uri(), wait_until="load")
            rows = await page.eval_on_selector_all(
                "#items tbody tr",
                "rows => rows.map(r => ({id: r.dataset.id, status: r.dataset.status,"
                " level: r.dataset.level, cells: [...r.children].map(c => c.innerText)}))",
            )
            charts = await page.eval_on_selector_all(
                "svg.chart", "svgs => svgs.map(s => s.closest('tr').dataset.id)"
            )
            image = await page.eval_on_selector(
                "img.shot", "i => [i.complete, i.naturalWidth, i.closest('tr').dataset.id]"
            )
            counts = await page.inner_text("#counts")
            levels = await page.inner_text("#levels")
            await page.click("tr[data-id='SE-1'] details summary")  # evidence expands
            expanded = await page.inner_text("tr[data-id='SE-1'] details pre")
            await page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        finally:
            await browser.close()
    expected = [(i["id"], i["status"], i["level"]) for i in on_disk["items"]]
    assert [(r["id"], r["status"], r["level"]) for r in rows] == expected
    for row, item in zip(rows, on_disk["items"], strict=True):
        assert row["cells"][0] == item["id"] and row["cells"][2] == item["status"]
        assert row["cells"][7] == (item["remediation"] or "")  # remediation shown as is
        # the criterion and the measured value beside it
        assert row["cells"][4] == item["criterion"] and row["cells"][5] == item["measured"]
    assert "secrets <in> a manager" in rows[2]["cells"][3]  # escaped, shown as text
    assert charts == ["LC-1", "LC-1", "LC-3"]  # one SVG per chart of the evidence
    assert image == [True, 64, "MA-4"]  # the screenshot, embedded and decoded
    assert "3 complete" in counts and "1 failed" in counts and "1 partial" in counts
    assert "critical" in levels and "recommended" in levels
    assert json.loads(expanded) == {"findings": 2}
    # nothing fetched but the report itself: no scripts, fonts or images from anywhere
    assert all(u.startswith(("file:", "data:")) for u in requests), requests
    shot = (tmp_path / "report.png").read_bytes()
    assert shot[:8] == b"\x89PNG\r\n\x1a\n" and len(shot) > 30_000
