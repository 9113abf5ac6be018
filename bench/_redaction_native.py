"""What a native pre-filter of the gazetteer could give the fast redaction tier at best, and
what one costs (``bench/redaction.py --native-bound``; docs/redaction.md, "Why 0.5 ms is
not reached"). Kept apart so that each module stays under 800 lines.

- ``prefilter_bound``: the pass over names, places and addresses on each chunk as it is,
  and on the same chunk with every capitalised run that yields no finding hidden from it
  (its letters made small: same length, same offsets). A pre-filter that told the rules
  exactly which runs to read, at no cost, could save at most the difference.
- ``automaton_cost``: an Aho-Corasick automaton (``ahocorasick-rs``, a compiled
  extension; ``pip install ahocorasick-rs``, not a dependency of stalwart) of every word
  the lists know: its build, and its search of each chunk, before any Python reads what it
  found. ``not-run`` when the package is not installed.
"""

from __future__ import annotations

import resource
import statistics
import time
from typing import Any

from stalwart.guard import _addresses as A
from stalwart.guard import _gazetteer as G
from stalwart.guard import _redact as R

__all__ = ["automaton_cost", "prefilter_bound"]


def _hide_idle_runs(text: str) -> tuple[str, int, int]:
    """``text`` with its capitalised runs that overlap no finding of the name pass in small
    letters; how many runs it has, and how many overlap a finding."""
    spans = G.name_spans(text, masked=A.mask_opaque(text))
    chars = list(text)
    runs = kept = 0
    for m in G._CAPS.finditer(text):
        runs += 1
        if any(start < m.end() and m.start() < end for start, end, _ in spans):
            kept += 1
            continue
        for i in range(m.start(), m.end()):
            small = chars[i].lower()
            chars[i] = small if len(small) == 1 else chars[i]  # ("İ": two characters)
    hidden = "".join(chars)
    return hidden, runs, kept


def prefilter_bound(warm: list[str], chunks: list[str], calls: int = 5) -> dict[str, Any]:
    """The name pass (and the whole scan) on each chunk and on it with its idle runs hidden,
    in turn, the least of ``calls`` calls each from the same memory of runs (what ``warm``
    left); medians over the chunks, and the median of the per-chunk ratios."""
    g = G.gazetteer()
    for c in warm:
        R._scan(c, R._ALL_KINDS, frozenset())
    runs, cues = dict(g.runs), dict(G._CUE_WORDS)

    def least(f: Any, text: str) -> float:
        best = None
        for _ in range(calls):
            g.runs.clear()
            g.runs.update(runs)
            G._CUE_WORDS.clear()
            G._CUE_WORDS.update(cues)
            start = time.thread_time_ns()
            f(text)
            took = time.thread_time_ns() - start
            best = took if best is None else min(best, took)
        assert best is not None
        return best / 1000

    def names(text: str) -> Any:
        return G.name_spans(text, masked=A.mask_opaque(text))

    def scan(text: str) -> Any:
        return R._scan(text, R._ALL_KINDS, frozenset())

    times: dict[str, list[float]] = {
        k: [] for k in ("names", "names_hidden", "scan", "scan_hidden")
    }
    counts: list[tuple[int, int]] = []
    for c in chunks:
        g.runs.clear()
        g.runs.update(runs)
        G._CUE_WORDS.clear()
        G._CUE_WORDS.update(cues)
        hidden, n_runs, n_kept = _hide_idle_runs(c)
        counts.append((n_runs, n_kept))
        times["names"].append(least(names, c))
        times["names_hidden"].append(least(names, hidden))
        times["scan"].append(least(scan, c))
        times["scan_hidden"].append(least(scan, hidden))
    out: dict[str, Any] = {
        "chunks": len(chunks),
        "statistic": (
            f"CPU us per 4 KB chunk, least of {calls} calls per chunk (each from the same "
            "memory of runs), median over the chunks; ratio: median of per-chunk ratios"
        ),
        "runs_per_chunk": round(statistics.mean(r for r, _ in counts), 1),
        "runs_with_a_finding_per_chunk": round(statistics.mean(k for _, k in counts), 1),
    }
    for name in ("names", "scan"):
        full, cut = times[name], times[f"{name}_hidden"]
        out[name] = {
            "cpu_us": round(statistics.median(full), 1),
            "idle_runs_hidden_cpu_us": round(statistics.median(cut), 1),
            "best_speedup": round(
                statistics.median(f / h for f, h in zip(full, cut, strict=True)), 3
            ),
        }
    return out


def automaton_cost(chunks: list[str], calls: int = 5) -> dict[str, Any]:
    """An Aho-Corasick automaton of every word the lists know (two letters or more): its
    build (CPU, memory) and its search of each chunk (least of ``calls``, median)."""
    try:
        import ahocorasick_rs  # type: ignore[import-not-found]
    except ImportError:
        return {"not-run": "ahocorasick-rs is not installed (pip install ahocorasick-rs)"}
    from importlib import metadata

    words = sorted(w for w in G.gazetteer().known if len(w) >= 2)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.process_time()
    automaton = ahocorasick_rs.AhoCorasick(
        words, matchkind=ahocorasick_rs.MatchKind.LeftmostLongest
    )
    build_s = time.process_time() - start
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss) / 1024
    times: list[float] = []
    found: list[int] = []
    for c in chunks:
        best = None
        for _ in range(calls):
            t = time.thread_time_ns()
            matches = automaton.find_matches_as_indexes(c)
            took = time.thread_time_ns() - t
            best = took if best is None else min(best, took)
        assert best is not None
        times.append(best / 1000)
        found.append(len(matches))
    return {
        "package": f"ahocorasick-rs {metadata.version('ahocorasick-rs')}",
        "patterns": len(words),
        "build_cpu_s": round(build_s, 2),
        "build_max_rss_growth_mb": round(grown_mb, 1),
        "search_cpu_us_per_4kb": round(statistics.median(times), 1),
        "matches_per_4kb": statistics.median(found),
        "chunks": len(chunks),
        "statistic": f"least of {calls} calls per chunk, median over the chunks",
    }
