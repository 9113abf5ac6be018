"""The pre-test of the detector's rules: the literals every match holds, read from a
pattern's parse tree (``stalwart.guard._literals``), and the proof that skipping a rule on
them changes no verdict."""

from __future__ import annotations

import json
import pathlib
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stalwart.guard import _detect
from stalwart.guard._corpus import benign_texts, heldout_injections, injection_payloads
from stalwart.guard._literals import required_literals

CORPUS = pathlib.Path(__file__).resolve().parents[3] / "bench/data/injections/corpus.jsonl"


@pytest.mark.parametrize(
    ("pattern", "literals"),
    [
        ("abc", ("abc",)),
        ("a|bc", ("a", "bc")),
        ("x?", None),  # may be empty: nothing is required
        (r"\w+\d", None),  # classes say nothing
        ("(?:foo|bar)bazz", ("bazz",)),  # the most selective part: its shortest is longest
        ("(?:fooo|baar)baz", ("baar", "fooo")),
        (r"#{2,}\s*x", ("#",)),
        ("[$€£]", ("$", "£", "€")),
        ("IGNORE (?:ALL|ANY)", ("ignore a",)),  # small letters; the parser's common "A"
        ("(?:a|x*)b", ("b",)),  # an alternative requiring nothing leaves the branch out
        ("\u017fecret", None),  # folds to an ASCII "s" under IGNORECASE: no pre-test
    ],
)
def test_required_literals(pattern: str, literals: tuple[str, ...] | None) -> None:
    assert required_literals(pattern, re.IGNORECASE) == literals


def _every_rule(text: str) -> tuple[float, set[str]]:
    """The verdict with every rule run: what ``_detect._rules`` must give."""
    miss = 1.0
    families: set[str] = set()
    for family, rx, weight, _ in _detect._COMPILED:
        if rx.search(text):
            families.add(family)
            miss *= 1.0 - weight
    return 1.0 - miss, families


def _texts() -> list[str]:
    texts = [json.loads(line)["text"] for line in CORPUS.read_text().splitlines() if line]
    texts += [p.text for p in injection_payloads()]
    texts += [t for t, _ in heldout_injections()] + benign_texts(400)
    return texts


def test_most_rules_have_a_pre_test() -> None:
    tested = sum(literals is not None for *_, literals in _detect._COMPILED)
    assert tested >= 40 and len(_detect._COMPILED) >= 42


def test_no_verdict_changes_on_the_corpora() -> None:
    texts = _texts()
    assert len(texts) > 1000
    flagged = 0
    for text in texts:
        for variant in (text, text.upper(), text.lower(), text.title()):
            assert _detect._rules(variant) == _every_rule(variant), variant
        flagged += _every_rule(text)[0] > 0
    assert flagged > 300  # the corpora exercise the rules, not only the pre-test


_WORDS = sorted(
    {word for *_, literals in _detect._COMPILED for word in literals or () if word.isascii()}
    | {"ignore", "Instructions", "SYSTEM", ":", " ", "\n", "<", ">", "#", "$5", "12345", "é"}
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_WORDS), min_size=1, max_size=12))
def test_no_verdict_changes_on_texts_made_of_the_rules_words(words: list[str]) -> None:
    text = " ".join(words)
    assert _detect._rules(text) == _every_rule(text)
