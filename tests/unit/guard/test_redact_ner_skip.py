"""The accurate tier skips its model on text where nothing it could find would be kept
(:meth:`stalwart.guard._ner.NerModel.worth_reading`, issue 16): the skip must never drop an
entity the model would have redacted."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest

from stalwart.guard import Redactor
from stalwart.guard._ner import WordForms, ner_model
from stalwart.llm.sim._tools import KB_ARTICLES, order_for

pytestmark = pytest.mark.accurate_redaction  # the model's skip, against the model

needs_model = pytest.mark.skipif(
    ner_model() is None, reason="the accurate tier's model is not installed (stalwart[ner])"
)

_SAMPLE = Path(__file__).parent / "data" / "fast_tier_findings.json.gz"


def helpdesk_answers() -> list[str]:
    """What the helpdesk's simulated model answers (stalwart.demo.app's SCENARIO), for a
    few orders: the texts the agent's output redaction reads on every ticket."""
    out = []
    for order in (4521, 17, 300, 9999):
        out.append(f"Refunded 1250 cents for order #{order}; the customer was e-mailed.")
        out.append(f"Order #{order}: {json.dumps(order_for(order))}"[:520])
    out.append(f"From our help center: {json.dumps(list(KB_ARTICLES))}"[:522])
    out.append("Routed to a human agent.")
    out.append("I could not complete this request automatically; a colleague will follow up.")
    return out


def test_word_forms_are_function_words_and_verb_forms_only() -> None:
    forms = WordForms(
        stop_words=frozenset({"from"}),
        verb_forms=frozenset({"forgot"}),
        verbs=frozenset({"refund", "change", "t", "snide", "park"}),
        rules=(("ed", ""), ("ing", "e"), ("er", "e"), ("er", ""), ("s", "")),
    )
    assert forms.common("from")
    assert forms.common("forgot")
    assert forms.common("refunded")
    assert forms.common("changing")
    assert not forms.common("ted")  # no form of a one-letter word
    assert not forms.common("achebe")
    # names ending like a comparative or an agent noun are no forms (found by the corpus
    # test below: the model calls "Snider" and "Greenlander" persons)
    assert not forms.common("snider")
    assert not forms.common("parker")


@needs_model
@pytest.mark.parametrize("text", helpdesk_answers())
def test_the_helpdesk_answers_skip_the_model(text: str) -> None:
    model = ner_model()
    assert model is not None
    assert not model.worth_reading(text)
    assert model._read(text, False) == []  # and reading it would have kept nothing
    assert Redactor(tier="accurate").redact(text) == Redactor().redact(text)


@needs_model
@pytest.mark.parametrize(
    "text",
    [
        "Chinua Achebe called about order #4521.",  # a name at the start of a sentence
        "The refund for order #4521 went to Chinua Achebe yesterday.",  # in lower-case words
        "refunded. Achebe asked for the rest.",  # after a full stop: no common word
        '"Achebe" wrote back about the refund.',  # in quotation marks
        "Thanks, Maria. Refunded 1250 cents.",  # a listed name after a greeting
        "Maria called.",  # a listed name, alone, at the start
        "The order for Jean-Luc shipped.",  # a hyphen inside: read
        "Refunded to O'Brien today.",  # an apostrophe inside: read
        "The parcel was shipped to Reading last week.",  # a dictionary word after "to"
        "The parcel was shipped to the old Mill yesterday.",  # after "to the old"
        "We met at Pine Park yesterday.",  # a place word after a capital
        "Ask Dr Zorbanek about it.",  # mid-sentence, in no list and no dictionary
        "WEENGALLON called again.",  # in capitals, no English word
        "Snider called about the refund.",  # a surname shaped like "snide" + "-er"
        "Greenlander.",  # "Greenland" + "-er"
        "The Hague office called.",  # a function word, then a capital: maybe one entity
        "Changing Rooms Ltd wrote.",  # a verb form, then a capital
    ],
)
def test_text_that_may_hold_a_name_or_place_is_read(text: str) -> None:
    model = ner_model()
    assert model is not None
    assert model.worth_reading(text)


@needs_model
def test_a_name_the_model_finds_is_still_redacted_wherever_it_stands() -> None:
    accurate = Redactor(tier="accurate")
    for text in (
        "Chinua Achebe called about order #4521.",
        "The refund for order #4521 went to Chinua Achebe yesterday.",
        "Refunded 1250 cents to Chinua Achebe; the customer was e-mailed.",
    ):
        out = accurate.redact(text)
        assert "Chinua" not in out and "Achebe" not in out, out


def _corpus() -> list[str]:
    """Sentences and lines of public text the tiers were not tuned on at this level: the
    shipped sample (presidio-evaluator sentences of the tuning templates, Python reference
    paragraphs, JSON log lines) cut at line ends and sentence ends, and the helpdesk's
    answers."""
    cases = json.loads(gzip.decompress(_SAMPLE.read_bytes()))
    texts: list[str] = []
    for case in cases:
        for line in case["text"].split("\n"):
            texts += [s for s in re.split(r"(?<=[.!?])\s+", line) if len(s) >= 4]
    return texts + helpdesk_answers()


@needs_model
def test_what_the_model_skips_it_would_have_found_nothing_in() -> None:
    """Every text of the corpus that the accurate tier no longer reads, read anyway: the
    model keeps no entity in any of them (organisations included), so the redaction of
    each is what it was."""
    model = ner_model()
    assert model is not None
    texts = _corpus()
    skipped = [t for t in texts if not model.worth_reading(t)]
    assert len(skipped) >= 50, "the corpus no longer exercises the skip"
    assert len(skipped) < len(texts)
    found = {t: model._read(t, True) for t in skipped}
    assert {t: spans for t, spans in found.items() if spans} == {}
