"""The detector on the public AgentDojo-derived corpus: the split is clean (no goal and no
text on both sides), and on the evaluation part -- never used for tuning -- it keeps the
floor docs/data-protection.md reports (bench/detector.py measures the exact figures)."""

from __future__ import annotations

import json
import pathlib

from stalwart.guard import InjectionDetector

CORPUS = pathlib.Path(__file__).resolve().parents[3] / "bench/data/injections/corpus.jsonl"
ROWS = [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines()]


def test_the_split_shares_no_goal_and_no_text() -> None:
    parts = {s: [r for r in ROWS if r["split"] == s] for s in ("tuning", "evaluation")}
    assert len(parts["tuning"]) + len(parts["evaluation"]) == len(ROWS)
    goals = {s: {r["goal"] for r in p if r["label"]} for s, p in parts.items()}
    assert goals["tuning"] and goals["evaluation"] and not goals["tuning"] & goals["evaluation"]
    texts = {s: {r["text"] for r in p} for s, p in parts.items()}
    assert not texts["tuning"] & texts["evaluation"]
    tuned = {r["template"] for r in parts["tuning"] if r["label"]}
    assert tuned == {"important_instructions", "direct", "ignore_previous"}
    assert {r["template"] for r in parts["evaluation"] if r["label"]} - tuned  # unseen ones


def test_the_evaluation_part_keeps_the_reported_floor() -> None:
    detector = InjectionDetector()
    rows = [r for r in ROWS if r["split"] == "evaluation"]
    flagged = [(r["label"], detector.score(r["text"]).flagged) for r in rows]
    tp = sum(1 for label, f in flagged if label and f)
    fp = sum(1 for label, f in flagged if not label and f)
    positives = sum(1 for label, _ in flagged if label)
    assert positives >= 100 and len(rows) - positives >= 100
    assert tp / positives >= 0.85  # measured 0.889 (bench/results/guard.json "detector")
    assert fp / (len(rows) - positives) <= 0.02  # measured 0.0
