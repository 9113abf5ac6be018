"""The injection detector on public data it was not tuned on (issue 16, "a detector worth
its cost").

Reads ``bench/data/injections/corpus.jsonl`` (built from AgentDojo by
``bench/data/build_injections.py``, split into tuning and evaluation parts before any
tuning) and reports, on the evaluation part only:

- ``precision`` / ``recall`` / ``false_positive_rate`` at the detector's default threshold;
- ``recall_by_template``, and ``recall_seen_templates`` / ``recall_unseen_templates``
  (phrasings present in the tuning part, and three that never were);
- ``p50_us`` / ``p95_us`` / ``max_us``: wall time per text of ``InjectionDetector.score``
  (``time.perf_counter``, each text scored ``--repeat`` times, the median taken per text),
  each a first reading: the verdicts the detector keeps per text are dropped before every
  call (before 2026-12-07 they were not, and every call after a text's first was answered
  from memory: 1.2 µs at the median);
- ``cached_p50_us``: the same texts read again, answered from the detector's memory.

Writes the ``"detector"`` key of ``bench/results/guard.json`` (the other keys are left as
they are)::

    .venv/bin/python bench/detector.py
"""

from __future__ import annotations

import argparse
import collections
import json
import pathlib
import platform
import statistics
import sys
import time
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from bench._meta import commit

from stalwart.guard import InjectionDetector

HERE = pathlib.Path(__file__).resolve().parent
CORPUS = HERE / "data" / "injections" / "corpus.jsonl"
RESULTS = HERE / "results" / "guard.json"
TUNING_TEMPLATES = frozenset({"important_instructions", "direct", "ignore_previous"})


def load(path: pathlib.Path = CORPUS) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


def evaluate(rows: list[dict[str, Any]], *, repeat: int = 5) -> dict[str, Any]:
    started_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    detector = InjectionDetector()
    evaluation = [r for r in rows if r["split"] == "evaluation"]
    tuning = [r for r in rows if r["split"] == "tuning"]
    tp = fp = fn = tn = 0
    hits: collections.Counter[str] = collections.Counter()
    totals: collections.Counter[str] = collections.Counter()
    times: list[float] = []
    cached: list[float] = []
    for row in evaluation:
        samples = []
        for _ in range(repeat):
            detector.forget()
            started = time.perf_counter()
            flagged = detector.score(row["text"], origin="bench").flagged
            samples.append(time.perf_counter() - started)
        times.append(statistics.median(samples))
        started = time.perf_counter()
        detector.score(row["text"], origin="bench")
        cached.append(time.perf_counter() - started)
        if row["label"]:
            totals[row["template"]] += 1
            if flagged:
                tp += 1
                hits[row["template"]] += 1
            else:
                fn += 1
        elif flagged:
            fp += 1
        else:
            tn += 1
    seen = [t for t in totals if t in TUNING_TEMPLATES]
    unseen = [t for t in totals if t not in TUNING_TEMPLATES]
    times.sort()
    return {
        "corpus": "AgentDojo 0.1.35 (MIT): injection-task goals x attack templates placed in "
        "injection vectors of the suites' environment texts; negatives: the environment "
        "texts (bench/data/injections/NOTICE.md)",
        "split": "goals halved and negatives halved at random, seed 20261205, before tuning; "
        "tuning positives use 3 templates, evaluation positives 6",
        "tuning_size": len(tuning),
        "tuning_injections": sum(r["label"] for r in tuning),
        "evaluation_size": len(evaluation),
        "evaluation_injections": tp + fn,
        "evaluation_benign": fp + tn,
        "threshold": detector.threshold,
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "false_positive_rate": _ratio(fp, fp + tn),
        "true_positives": tp,
        "false_negatives": fn,
        "false_positives": fp,
        "recall_by_template": {t: _ratio(hits[t], totals[t]) for t in sorted(totals)},
        "recall_seen_templates": _ratio(sum(hits[t] for t in seen), sum(totals[t] for t in seen)),
        "recall_unseen_templates": _ratio(
            sum(hits[t] for t in unseen), sum(totals[t] for t in unseen)
        ),
        "p50_us": round(times[len(times) // 2] * 1e6, 1),
        "cached_p50_us": round(sorted(cached)[len(cached) // 2] * 1e6, 1),
        "p95_us": round(times[int(len(times) * 0.95)] * 1e6, 1),
        "max_us": round(times[-1] * 1e6, 1),
        "mean_chars": round(statistics.mean(len(r["text"]) for r in evaluation)),
        "commit": commit(),
        "started_at": started_at,
        "machine": f"{platform.machine()} {platform.python_implementation()} "
        f"{platform.python_version()}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=pathlib.Path, default=RESULTS)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    result = evaluate(load(), repeat=args.repeat)
    current = json.loads(args.output.read_text()) if args.output.exists() else {}
    current["detector"] = result  # read-modify-write: only this key is ours
    args.output.write_text(json.dumps(current, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
