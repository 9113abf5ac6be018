"""The fast redaction tier of another git revision against this tree, in the same run: its
time per 4 KB (``compare_fast``), per pass (``breakdown``) and its findings span for span
(``same_findings``). Used by ``bench/redaction.py`` (``--compare``, ``--same-findings``);
kept apart so that each module stays under 800 lines."""

from __future__ import annotations

import contextlib
import json
import pathlib
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def _sources(revision: str) -> Iterator[dict[str, str]]:
    """``src/`` of ``revision`` (from git, in a temporary directory) and of this tree."""
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", revision, "src"], capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        yield {"before": f"{tmp}/src", "after": str(ROOT / "src")}


@contextlib.contextmanager
def _workers(revision: str, code: str) -> Iterator[dict[str, subprocess.Popen[str]]]:
    """One long-lived worker process running ``code`` per side (``before``: ``revision``;
    ``after``: this tree), talking JSON lines on stdin and stdout; closed afterwards."""
    with _sources(revision) as sources:
        procs = {
            name: subprocess.Popen(
                [sys.executable, "-c", code, src],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for name, src in sources.items()
        }
        try:
            yield procs
        finally:
            for proc in procs.values():
                if proc.stdin is not None:
                    proc.stdin.close()
                proc.wait(timeout=30)


__all__ = ["breakdown", "compare_fast", "paired", "same_findings"]

# -- before/after: the fast tier of another revision, timed in the same run ------------------
_WORKER = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
from stalwart.guard import Redactor
r = Redactor(tier="fast")
r.redact("warm-up for Ada Lovelace, 221 Baker Street, call 020 7946 0958")
for line in sys.stdin:
    chunks = json.loads(line)
    out = []
    for c in chunks:
        start, start_cpu = time.perf_counter_ns(), time.thread_time_ns()
        r.redact(c)
        cpu = time.thread_time_ns() - start_cpu
        out.append(((time.perf_counter_ns() - start) / 1000, cpu / 1000))
    print(json.dumps(out), flush=True)
"""


def compare_fast(
    revision: str, corpora: dict[str, list[str] | list[list[str]]], rounds: int
) -> dict[str, Any]:
    """The fast tier of ``revision`` (its ``src/`` from git) and of this tree, each in its own
    process, timed on the same chunks in alternating rounds (the order flips each round),
    so both see the same machine load; p50 per 4 KB of each and their ratio. A corpus given
    as one list of chunks per round has each round read chunks neither process has read
    before (what the tier remembers of texts it read does not help)."""
    result: dict[str, Any] = {"revision": revision, "rounds": rounds}
    with _workers(revision, _WORKER) as procs:
        for corpus, chunks in corpora.items():
            samples: dict[str, list[tuple[float, float]]] = {"before": [], "after": []}
            for r in range(rounds):
                order = ("before", "after") if r % 2 == 0 else ("after", "before")
                batch = chunks[r % len(chunks)] if isinstance(chunks[0], list) else chunks
                for name in order:
                    proc = procs[name]
                    assert proc.stdin is not None and proc.stdout is not None
                    proc.stdin.write(json.dumps(batch) + "\n")
                    proc.stdin.flush()
                    samples[name] += [tuple(x) for x in json.loads(proc.stdout.readline())]
            entry: dict[str, Any] = {}
            for name, got in samples.items():
                entry[f"{name}_p50_us"] = round(statistics.median(w for w, _ in got), 1)
                entry[f"{name}_cpu_p50_us"] = round(statistics.median(c for _, c in got), 1)
            entry["speedup_p50"] = round(entry["before_p50_us"] / entry["after_p50_us"], 2)
            entry["speedup_cpu_p50"] = round(
                entry["before_cpu_p50_us"] / entry["after_cpu_p50_us"], 2
            )
            entry["samples_each"] = len(samples["after"])
            result[corpus] = entry
    return result


_BREAKDOWN_WORKER = """
import json, statistics, sys, time
sys.path.insert(0, sys.argv[1])
from stalwart.guard import _gazetteer as G, _redact as R, _vendors as V
try:  # the address rules have their own module since the split of _gazetteer.py
    from stalwart.guard._addresses import address_spans, _ADDRESS_NUMBER
except ImportError:
    address_spans, _ADDRESS_NUMBER = G._addresses, G._ADDRESS_NUMBER
try:  # and the numbers theirs since 2026-12-07
    from stalwart.guard._numbers import number_spans
except ImportError:
    number_spans = R._number_spans
g = G.gazetteer()
warm, chunks = json.loads(sys.stdin.read())
for c in warm:
    R._scan(c, R._ALL_KINDS, frozenset())
runs, cues = dict(g.runs), dict(G._CUE_WORDS)  # each timed call starts from this memory
passes = {
    "scan": lambda c: R._scan(c, R._ALL_KINDS, frozenset()),
    "names_places_addresses": lambda c: G.name_spans(c, g, masked=c),
    "addresses": lambda c: address_spans(c, g, c),
    "address_number_pattern": lambda c: list(_ADDRESS_NUMBER.finditer(c)),
    "capitalised_run_pattern": lambda c: list(G._CAPS.finditer(c)),
    "numbers": lambda c: number_spans(c, c),
    "credentials": V.credential_spans,
}
out = {}
for name, f in passes.items():
    best = []
    for c in chunks:
        times = []
        for _ in range(5):
            g.runs.clear(); g.runs.update(runs); G._CUE_WORDS.clear(); G._CUE_WORDS.update(cues)
            start = time.thread_time_ns()
            f(c)
            times.append(time.thread_time_ns() - start)
        best.append(min(times) / 1000)
    out[name] = statistics.median(best)
print(json.dumps(out))
"""


def breakdown(revision: str, warm: list[str], chunks: list[str], rounds: int) -> dict[str, Any]:
    """Where the fast tier's time goes on PII-dense prose, in ``revision`` and in this tree:
    the CPU time of each pass (the whole scan; names, places and addresses; addresses; their
    two patterns alone; numbers; credentials) on each chunk, the least of 5 calls that each
    start from the same memory of runs (what ``warm`` left, so each call is a first reading
    of the chunk's new names), median over the chunks; each revision in its own process,
    alternating for ``rounds`` rounds (the order flips each round), median over rounds."""
    runs: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    with _sources(revision) as sources:
        for r in range(rounds):
            for name in ("before", "after") if r % 2 == 0 else ("after", "before"):
                out = subprocess.run(
                    [sys.executable, "-c", _BREAKDOWN_WORKER, sources[name]],
                    input=json.dumps([warm, chunks]),
                    capture_output=True,
                    text=True,
                    check=True,
                    timeout=600,
                ).stdout
                runs[name].append(json.loads(out))
    result: dict[str, Any] = {
        "revision": revision,
        "rounds": rounds,
        "chunks": len(chunks),
        "statistic": (
            "CPU us per 4 KB chunk: least of 5 calls per chunk (each from the same memory of "
            "runs), median over the chunks, median over the rounds"
        ),
    }
    for name in runs["after"][0]:
        before = statistics.median(r[name] for r in runs["before"])
        after = statistics.median(r[name] for r in runs["after"])
        result[name] = {
            "before_cpu_us": round(before, 1),
            "after_cpu_us": round(after, 1),
            "speedup": round(before / after, 2),
        }
    return result


_PAIRED_WORKER = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
from stalwart.guard import _gazetteer as G, _redact as R
g = G.gazetteer()
warm, chunks, calls = json.loads(sys.stdin.readline())
for c in warm:
    R._scan(c, R._ALL_KINDS, frozenset())
runs, cues = dict(g.runs), dict(G._CUE_WORDS)  # each timed call starts from this memory
print("ready", flush=True)
for line in sys.stdin:
    best = None
    for _ in range(calls):
        g.runs.clear(); g.runs.update(runs); G._CUE_WORDS.clear(); G._CUE_WORDS.update(cues)
        start = time.thread_time_ns()
        R._scan(chunks[int(line)], R._ALL_KINDS, frozenset())
        took = time.thread_time_ns() - start
        best = took if best is None else min(best, took)
    print(best / 1000, flush=True)
"""


def paired(revision: str, warm: list[str], chunks: list[str], calls: int = 5) -> dict[str, Any]:
    """The whole fast-tier scan of ``revision`` and of this tree on each chunk, the two
    processes taking turns chunk by chunk (the order flips every chunk), the least of
    ``calls`` calls per chunk, each from the same memory of runs (what ``warm`` left: a
    first reading of the chunk's new names); the speed-up is the median of the per-chunk
    ratios. Each ratio compares two readings of one chunk taken moments apart, so a change
    in the machine's load between rounds, which moves a median of rounds, moves it less."""
    times: dict[str, list[float]] = {"before": [], "after": []}
    with _workers(revision, _PAIRED_WORKER) as procs:
        for proc in procs.values():
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(json.dumps([warm, chunks, calls]) + "\n")
            proc.stdin.flush()
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError("a paired worker did not start")
        for i in range(len(chunks)):
            for name in ("before", "after") if i % 2 == 0 else ("after", "before"):
                proc = procs[name]
                assert proc.stdin is not None and proc.stdout is not None
                proc.stdin.write(f"{i}\n")
                proc.stdin.flush()
                times[name].append(float(proc.stdout.readline()))
    ratios = [b / a for b, a in zip(times["before"], times["after"], strict=True)]
    quartiles = statistics.quantiles(ratios, n=4)
    return {
        "revision": revision,
        "chunks": len(chunks),
        "statistic": (
            f"CPU us per 4 KB chunk of the whole scan, least of {calls} calls per chunk (each "
            "from the same memory of runs), the two revisions alternating chunk by chunk; "
            "speed-up: median of the per-chunk ratios before/after"
        ),
        "before_cpu_us": round(statistics.median(times["before"]), 1),
        "after_cpu_us": round(statistics.median(times["after"]), 1),
        "speedup": round(statistics.median(ratios), 3),
        "speedup_quartiles": [round(quartiles[0], 3), round(quartiles[2], 3)],
    }


_FINDINGS_WORKER = """
import json, sys
sys.path.insert(0, sys.argv[1])
from stalwart.guard import Redactor
r = Redactor(tier="fast")
corpora = json.loads(sys.stdin.read())
print(json.dumps({k: [[[f.kind, f.start, f.end] for f in r.findings(t)] for t in texts]
                  for k, texts in corpora.items()}))
"""


def same_findings(
    revision: str, corpora: dict[str, list[str]], hidden: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """The fast tier's findings of ``revision`` (its ``src/`` from git) and of this tree on
    the same texts, compared span for span: per corpus, how many texts got identical
    findings, and the spans found by only one of the two (the first 10 shown; none for the
    corpora in ``hidden``, the evaluation part, whose texts tuning must not see)."""
    found: dict[str, Any] = {}
    with _sources(revision) as sources:
        for name, src in sources.items():
            out = subprocess.run(
                [sys.executable, "-c", _FINDINGS_WORKER, src],
                input=json.dumps(corpora),
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            found[name] = json.loads(out)
    result: dict[str, Any] = {"revision": revision}
    for corpus, texts in corpora.items():
        differ = []
        for i, text in enumerate(texts):
            before = {tuple(f) for f in found["before"][corpus][i]}
            after = {tuple(f) for f in found["after"][corpus][i]}
            if before != after:
                differ.append({
                    "text": i,
                    "only_before": [[k, text[a:b]] for k, a, b in sorted(before - after)],
                    "only_after": [[k, text[a:b]] for k, a, b in sorted(after - before)],
                })  # fmt: skip
        result[corpus] = {
            "texts": len(texts),
            "identical": len(texts) - len(differ),
            "findings_before": sum(map(len, found["before"][corpus])),
            "findings_after": sum(map(len, found["after"][corpus])),
            "differences": [] if corpus in hidden else differ[:10],
        }
    return result
