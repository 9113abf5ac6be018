"""The accurate tier's skip (issue 16), skip on and skip off in the same run.

The accurate tier does not run its model on a text in which nothing the model could find
would be kept (``NerModel.worth_reading``). This bench measures, in one process, the
accurate tier with the skip (as shipped) and without it (``worth_reading`` answering yes
to every text), on the same texts:

- **quality**, on the evaluation part of ``bench/redaction.py``'s split only (3,000
  sentences of the evaluation templates, the 525 evaluation paragraphs of the Python
  reference): recall per entity type, findings outside labels, false-positive rate, and
  how many texts get identical findings with and without the skip (counts only: no
  evaluation text is shown);
- **time**, per call, CPU of the calling thread (``time.thread_time_ns``) and wall clock:
  the helpdesk's answers (``helpdesk_answers``: what the demo app's simulated model
  answers for the tickets ``stalwart.demo.tickets.generate`` makes, per its SCENARIO) and
  4 KB chunks of the evaluation sentences, the Python reference and JSON log lines; the
  model's remembered spans are dropped before every call (each call is a first reading);
  the two modes alternate round by round, the order flipping each round.

Writes the ``redaction.accurate_skip`` key of ``bench/results/guard.json`` (which a run of
``bench/redaction.py``, rewriting the rest of the ``redaction`` key, keeps). Usage: ``python
bench/redaction_skip.py [--quick]``; needs what ``bench/redaction.py`` needs.
"""

from __future__ import annotations

import argparse
import json
import operator
import os
import pathlib
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from bench._meta import commit
from bench.redaction import (
    RESULTS,
    _template_split,
    chunks_4kb,
    log_lines,
    negative_fp,
    negative_paragraphs,
    pii_quality,
    pii_samples,
)

from stalwart.guard import Redactor
from stalwart.guard._ner import NerModel, ner_model
from stalwart.llm.sim._tools import ToolServices, order_for


def helpdesk_answers(count: int) -> list[str]:
    """The answers of the helpdesk's simulated model (stalwart.demo.app SCENARIO) to
    ``count`` generated tickets: a refund's confirmation, an order's record, the help
    center's articles, or the simulated model's echo of a ticket no rule answers."""
    from stalwart.demo.tickets import generate

    services = ToolServices()
    out = []
    for t in generate(count, seed=5, injection_rate=0.0):
        text = t["text"]
        order = text.split("#", 1)[1].split()[0].rstrip("?.") if "#" in text else ""
        if t["kind"] == "refund":
            amount = text.split("refund of ", 1)[1].split()[0]
            out.append(f"Refunded {amount} cents for order #{order}; the customer was e-mailed.")
        elif t["kind"] == "where":
            record = json.dumps(order_for(int(order)), separators=(",", ":"))
            out.append(f"Order #{order}: {record[:500]}")
        elif t["kind"] == "password":
            found = json.dumps(services.search("password"), separators=(",", ":"))
            out.append(f"From our help center: {found[:500]}")
        else:
            out.append(f"I understand. You said: {text[:200]}")
    return out


def _timed(redactor: Redactor, model: NerModel, texts: list[str]) -> list[tuple[float, float]]:
    out = []
    for text in texts:
        model.forget()
        start, start_cpu = time.perf_counter_ns(), time.thread_time_ns()
        redactor.redact(text)
        cpu = time.thread_time_ns() - start_cpu
        out.append(((time.perf_counter_ns() - start) / 1000, cpu / 1000))
    return out


def _modes(model: NerModel) -> dict[str, Callable[[], None]]:
    """How to switch the skip on (the method, as shipped) and off (always read)."""

    def on() -> None:
        vars(model).pop("worth_reading", None)

    def off() -> None:
        vars(model)["worth_reading"] = lambda text: True

    return {"skip": on, "no_skip": off}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples (smoke run)")
    parser.add_argument("--output", type=pathlib.Path, default=RESULTS)
    args = parser.parse_args()
    started = time.perf_counter()
    load_at_start = round(os.getloadavg()[0], 2)
    started_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    model = ner_model()
    if model is None:
        raise SystemExit("the accurate tier's model is not installed (pip install stalwart[ner])")
    accurate = Redactor(tier="accurate")
    modes = _modes(model)
    count = 600 if args.quick else 3000
    _, eval_templates = _template_split()
    samples = pii_samples(eval_templates, count)
    _, paragraphs = negative_paragraphs()
    answers = helpdesk_answers(40 if args.quick else 200)

    quality: dict[str, Any] = {}
    findings: dict[str, dict[str, list[list[Any]]]] = {}
    for name, switch in modes.items():
        switch()
        model.forget()
        quality[name] = {
            "pii": pii_quality(accurate, samples),
            "negatives": negative_fp(accurate, paragraphs),
        }
        findings[name] = {
            corpus: [[(f.kind, f.start, f.end) for f in accurate.findings(t)] for t in texts]
            for corpus, texts in (
                ("evaluation_sentences", [t for t, _ in samples]),
                ("evaluation_negatives", paragraphs),
                ("helpdesk_answers", answers),
            )
        }
    modes["skip"]()
    identical = {
        corpus: {
            "texts": len(found),
            "identical": sum(map(operator.eq, found, findings["no_skip"][corpus])),
        }
        for corpus, found in findings["skip"].items()
    }
    skipped = {
        "evaluation_sentences": sum(not model.worth_reading(t) for t, _ in samples),
        "evaluation_negatives": sum(not model.worth_reading(p) for p in paragraphs),
        "helpdesk_answers": sum(not model.worth_reading(a) for a in answers),
    }

    corpora = {
        "helpdesk_answer": answers,
        "4kb_pii_prose": chunks_4kb([t for t, _ in samples], 20 if args.quick else 40),
        "4kb_technical": chunks_4kb(paragraphs, 20 if args.quick else 40),
        "4kb_log_lines": chunks_4kb(log_lines(), 20 if args.quick else 40),
    }
    rounds = 2 if args.quick else 4
    got: dict[str, dict[str, list[tuple[float, float]]]] = {
        c: {m: [] for m in modes} for c in corpora
    }
    for r in range(rounds):
        order = list(modes) if r % 2 == 0 else list(reversed(modes))
        for corpus, texts in corpora.items():
            per_round = texts if corpus == "helpdesk_answer" else texts[r::rounds]
            for name in order:
                modes[name]()
                got[corpus][name] += _timed(accurate, model, per_round)
    modes["skip"]()
    timing: dict[str, Any] = {}
    for corpus, by_mode in got.items():
        entry: dict[str, float] = {}
        for name, values in by_mode.items():
            entry[f"{name}_p50_us"] = round(statistics.median(w for w, _ in values), 1)
            entry[f"{name}_cpu_p50_us"] = round(statistics.median(c for _, c in values), 1)
            entry[f"{name}_cpu_mean_us"] = round(statistics.fmean(c for _, c in values), 1)
        entry["cpu_p50_ratio_no_skip_over_skip"] = round(
            entry["no_skip_cpu_p50_us"] / entry["skip_cpu_p50_us"], 2
        )
        entry["cpu_mean_ratio_no_skip_over_skip"] = round(
            entry["no_skip_cpu_mean_us"] / entry["skip_cpu_mean_us"], 2
        )
        entry["samples_each"] = len(by_mode["skip"])
        timing[corpus] = entry
    check_cost = [
        _cost(model.worth_reading, texts) for texts in (answers, corpora["4kb_pii_prose"])
    ]

    result: dict[str, Any] = {
        "what": (
            "the accurate tier with its model skipped where nothing it finds would be kept "
            "(skip, as shipped) and with the model run on every text that has a capital "
            "(no_skip), same process, same texts"
        ),
        "data": (
            f"{len(samples)} sentences of the evaluation templates (bench/redaction.py split), "
            f"{len(paragraphs)} evaluation paragraphs of the Python reference, "
            f"{len(answers)} helpdesk answers (stalwart.demo SCENARIO over "
            "stalwart.demo.tickets.generate(seed=5)), 4 KB chunks of each corpus"
        ),
        "quality": quality,
        "identical_findings": identical,
        "texts_skipped": skipped,
        "time_statistic": (
            "per call: median (and mean) of the calling thread's CPU time and median wall "
            "time, the model's remembered spans dropped before each call; modes alternating "
            f"over {rounds} rounds, the order flipping each round"
        ),
        "time": timing,
        "worth_reading_cpu_p50_us": {
            "helpdesk_answer": check_cost[0],
            "4kb_pii_prose": check_cost[1],
        },
        "ner_model": model.name,
        "quick": args.quick,
        "started_at": started_at,
        "commit": commit(),
        "load_average_1min_at_start": load_at_start,
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        "cores": os.cpu_count(),
        "seconds": round(time.perf_counter() - started, 1),
    }
    existing = json.loads(args.output.read_text()) if args.output.exists() else {}
    existing.setdefault("redaction", {})["accurate_skip"] = result
    args.output.write_text(json.dumps(existing, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


def _cost(check: Callable[[str], bool], texts: list[str]) -> float:
    cpu = []
    for text in texts:
        start = time.thread_time_ns()
        check(text)
        cpu.append((time.thread_time_ns() - start) / 1000)
    return round(statistics.median(cpu), 1)


if __name__ == "__main__":
    sys.exit(main())
