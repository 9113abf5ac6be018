"""The fast tier's findings on a fixed corpus sample, span for span, as the tier before its
speed rework (commit b4d5ff3) found them: a change meant only to make the tier faster must
keep every one of them.

The sample (``data/fast_tier_findings.json.gz``) holds 24 chunks of 4 KB of
presidio-evaluator 0.3.2 generated sentences (MIT; the tuning templates of
``bench/redaction.py``), 40 paragraphs of the Python language reference
(``pydoc_data.topics``, PSF licence) and 60 JSON log lines with Faker values (MIT), each with
the findings of that revision. A change that finds more or less on purpose regenerates it
and says so in its commit.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from stalwart.guard import Redactor

_SAMPLE = Path(__file__).parent / "data" / "fast_tier_findings.json.gz"
_CASES = json.loads(gzip.decompress(_SAMPLE.read_bytes()))


def test_the_sample_holds_every_kind_of_text() -> None:
    kinds = {f[0] for case in _CASES for f in case["findings"]}
    assert {"person", "location", "address", "phone", "card", "email"} <= kinds
    assert sum(len(case["findings"]) for case in _CASES) > 1000


@pytest.mark.parametrize("index", range(len(_CASES)))
def test_findings_are_span_identical(index: int) -> None:
    case = _CASES[index]
    found = [[f.kind, f.start, f.end] for f in Redactor().findings(case["text"])]
    assert found == case["findings"]


def test_identical_when_read_again_and_in_another_order() -> None:
    """What the tier remembers of texts it has read changes nothing it finds."""
    redactor = Redactor()
    for case in reversed(_CASES):
        found = [[f.kind, f.start, f.end] for f in redactor.findings(case["text"])]
        assert found == case["findings"]


# -- the shortcuts of the rework, each against what the general rules make of it ------------
@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("He flew to Pines yesterday", [("location", "Pines")]),  # one word after a place cue
        ("Call Dr Moss today", [("person", "Moss")]),  # a common word after a title
        ("Pittman's car is red", [("person", "Pittman's")]),  # a surname as a possessive
        ("I spoke with Pittman today", [("person", "Pittman")]),  # a surname after "with"
        ("Pittman said no", []),  # a surname alone, no cue: kept
        ("We moved to Tunisia 63112 last year", [("location", "Tunisia"), ("address", "63112")]),
        ("my name is Will", [("person", "Will")]),
        ("THE REPORT FROM HELSINKI", [("location", "HELSINKI")]),
        ("Orla Mitchell wrote", [("person", "Orla Mitchell")]),  # given name and surname
        ("Hi Landerico, thanks", [("person", "Landerico")]),  # a greeting starts the run
        # a name word again: counted in the capitalised runs, found after a hyphen too
        ("My name is Kuyra and Kuyra is here", [("person", "Kuyra"), ("person", "Kuyra")]),
        ("Ljiljana Novak met Jean-Novak", [("person", "Ljiljana Novak"), ("person", "Novak")]),
        ("Orla Mitchell met O'Mitchell", [("person", "Orla Mitchell"), ("person", "Mitchell")]),
        (
            "Meet me at the corner of 51 Traill Street and Zeeb Shores tomorrow",
            [("address", "the corner of 51 Traill Street and Zeeb Shores")],
        ),
        ("Suite 996 and Box 12", [("address", "Suite 996"), ("address", "Box 12")]),
        ("Apt. 5 is on 12 Baker Street", [("address", "Apt. 5"), ("address", "12 Baker Street")]),
        ("call 555 0100 at 5 pm", [("phone", "555 0100")]),  # "at 5": no street before it
    ],
)
def test_what_the_shortcuts_find(text: str, found: list[tuple[str, str]]) -> None:
    assert [(f.kind, text[f.start : f.end]) for f in Redactor().findings(text)] == found
