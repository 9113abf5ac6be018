"""Names, places and street addresses for the fast redaction tier, without a model.

- **Person names**: runs of capitalised words where a word is a known given name
  (followed by another capitalised word or an initial), follows a title (``Mr``, ``Dr``…)
  or a cue (``my name is``, ``Dear``, ``signed``), is a known given name or surname standing
  alone (``Pittman's``), or is followed by a surname of a common shape (``-dóttir``,
  ``-ović``, ``-enko``); the given-name and surname lists come from Faker, places from
  GeoNames (``data/gazetteer.json.gz``; provenance in ``data/NOTICE.md``; common English
  words were removed from the lists when it was built, by ``bench/build_gazetteer.py``);
  and, whatever the words before it, a run that is a name by its shape ("John Blakey",
  "Meltem Vledder", "Tom I. Holzman": :mod:`stalwart.guard._shapes`, which this module
  would have grown past 800 lines to hold).
- **Places**: a capitalised run (or an upper-case one: ``HELSINKI``) that is, or starts
  with, a known city, region, country or US state (the longest name wins: "New York",
  "Ústí nad Labem"), compared without accents; or any capitalised run after words that
  say a place follows ("originally from", "flew to", "I'm in").
- **Street addresses**: a house number with words ending in a street word ("12 Baker
  Street"), a street word then a number ("Avenida Noruega 42", "Síp utca 17",
  "Kirchenallee 68"), a number, a street name and a number ("7007 Štefanikova 1878"),
  unit lines ("Apt. 5"), P.O. boxes, military addresses and street corners; each is
  extended over what follows it in an address (unit, city, region, postcode, country, on
  the same line or the next ones). These rules live in :mod:`stalwart.guard._addresses`
  (this module held both, past 800 lines).

Speed: every pattern here starts with a character class the regex engine checks in C
(a digit, a capital), so a text is read a few times by compiled patterns and Python code
runs only per capitalised run and per candidate address; a run none of whose words is
known, after no cue, costs a set lookup. What a run is by its words alone is remembered
(:attr:`Gazetteer.runs`), so a run read before costs a dictionary lookup and the work that
depends on the words around it. The lists are loaded once, on first use.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import itertools
import json
import re
import threading
import unicodedata
from collections.abc import Set
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

from stalwart.guard._addresses import address_spans, mask_opaque
from stalwart.guard._shapes import COMMON_GIVEN, NO_SHAPE, add_shaped, shaped_name, shaped_place
from stalwart.guard._words import (
    _ANY_CUE,
    _INITIAL,
    _NAME_CUES,
    _PARTICLE_TRIE,
    _PARTICLES,
    _PLACE_PREPOSITIONS,
    _PLACE_VERBS,
    _TITLES,
    _UP,
    _WEAK_CUES,
    _WORD,
    PLACE_ENDINGS,
    US_STATE_CODES,
    Span,
)  # fmt: skip

__all__ = [
    "INDEX_FILE", "LISTS_FILE", "PLACE_ENDINGS", "Gazetteer", "GazetteerIndex", "fold",
    "gazetteer", "lists_sha256", "name_spans",
]  # fmt: skip

LISTS_FILE = "gazetteer.json.gz"
"""The name and place lists, in ``stalwart/guard/data`` (``bench/build_gazetteer.py``)."""
INDEX_FILE = "gazetteer_index.json.gz"
"""What :class:`GazetteerIndex` derives from them, beside them."""

_CAPS = re.compile(
    rf"{_WORD}(?:[ ](?:[A-Z]\.?(?=[ ])|{_WORD}"
    rf"|{_PARTICLE_TRIE}(?:[ ]{_PARTICLE_TRIE})?(?=[ ][{_UP}])))*"
)
_POSTCODE = re.compile(
    r"[ ,]+(?:\d{5}(?:-\d{4})?|\d{4}(?:-\d{3})?|\d{3}[ ]?\d{2}|\d{2}-\d{3}"
    r"|[A-Z]{1,2}\d[A-Z\d]?[ ]?\d[A-Z]{2}|[A-Z]\d[A-Z][ ]?\d[A-Z]\d)(?![\w-])"
)
_ZIP = re.compile(r"[ ]+\d{5}(?:-\d{4})?\b")
_REDACTED = re.compile(r"\[REDACTED:[a-z_]+\]")
_NAME_WORD = re.compile(_WORD)
_STRIP = ",:;\"'()\u201c\u201d\u2018\u2019\u00ab\u00bb-\u2013\u2014"
_FOLD = str.maketrans({"ß": "ss", "æ": "ae", "Æ": "Ae", "ø": "o", "Ø": "O", "ð": "d",
                       "Ð": "D", "þ": "th", "Þ": "Th", "ł": "l", "Ł": "L", "đ": "d",
                       "Đ": "D", "œ": "oe", "Œ": "Oe", "\u0131": "i"})  # fmt: skip


def fold(word: str) -> str:
    """``word`` without accents ("Ždárec" -> "Zdarec", "Garðabær" -> "Gardabaer"); ASCII
    words come back as they are."""
    if word.isascii():
        return word
    decomposed = unicodedata.normalize("NFKD", word.translate(_FOLD))
    return "".join(c for c in decomposed if not unicodedata.combining(c))


@dataclasses.dataclass(frozen=True, slots=True)
class GazetteerIndex:
    """What :class:`Gazetteer` derives from the lists: the names and places without their
    accents that the lists lack, and the word counts of the places of more than one word.

    Deriving it costs about 0.25 s of CPU (a Unicode decomposition per accented name, a
    loop over the 28,000 places of several words), in every process that loads the lists:
    a node, its fork server, each CLI run. So it ships, derived once, beside the lists
    (``data/gazetteer_index.json.gz``, with the lists' SHA-256: ``bench/build_gazetteer.py
    --index`` writes it, and a test checks that it is what :meth:`derive` makes of the
    shipped lists); a stale or missing file is derived again at load."""

    first_folded: frozenset[str]
    last_folded: frozenset[str]
    place_folded: frozenset[str]
    # first word -> how many words the places starting with it have, most first, for the
    # heads of places of more than one word ("Port": 3, 2; no "Port" alone): what
    # :func:`_place_at` tries, not every length up to the most
    place_lengths: dict[str, tuple[int, ...]]

    @classmethod
    def derive(
        cls, first: Set[str], last: Set[str], places: Set[str], common: frozenset[str]
    ) -> GazetteerIndex:
        """From the lists (``common`` capitalised: "Bäck" without its accent is "Back", a
        common word, not a name)."""

        def folded(names: Set[str]) -> frozenset[str]:
            return frozenset({f for n in names if (f := fold(n)) not in common} - names)

        place_folded = folded(places)
        lengths: dict[str, set[int]] = {}
        single: set[str] = set()
        for place in itertools.chain(places, place_folded):
            head, _, rest = place.partition(" ")
            if rest:
                lengths.setdefault(head, set()).add(rest.count(" ") + 2)
            else:
                single.add(head)
        return cls(
            folded(first),
            folded(last),
            place_folded,
            {
                head: tuple(sorted(n | ({1} if head in single else set()), reverse=True))
                for head, n in lengths.items()
            },
        )

    def as_json(self, source_sha256: str) -> dict[str, object]:
        return {
            "source_sha256": source_sha256,
            "first_folded": sorted(self.first_folded),
            "last_folded": sorted(self.last_folded),
            "place_folded": sorted(self.place_folded),
            "place_lengths": dict(sorted(self.place_lengths.items())),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GazetteerIndex:
        return cls(
            frozenset(data["first_folded"]),
            frozenset(data["last_folded"]),
            frozenset(data["place_folded"]),
            {head: tuple(n) for head, n in data["place_lengths"].items()},
        )


class Gazetteer:
    """The name and place lists, as sets (the data file's lists, nothing added), each also
    holding its names without accents."""

    def __init__(
        self,
        first: Set[str],
        last: Set[str],
        places: Set[str],
        common: Set[str] = frozenset(),
        *,
        index: GazetteerIndex | None = None,
    ) -> None:
        self.common = frozenset(w.capitalize() for w in common)
        if index is None:
            index = GazetteerIndex.derive(first, last, places, self.common)
        self.index = index
        self.first = frozenset(first).union(index.first_folded)
        self.last = frozenset(last).union(index.last_folded)
        self.places = frozenset(places).union(index.place_folded)
        # first word -> the most words a place starting with it has: 1 for the places of
        # one word (most of them), the index's most for the others
        longest = dict.fromkeys((p for p in self.places if " " not in p), 1)
        longest.update((head, n[0]) for head, n in index.place_lengths.items())
        self.place_heads = longest
        self.place_lengths = index.place_lengths
        self.known = self.first.union(self.last, longest.keys())
        self.runs: dict[str, _Run] = {}  # capitalised runs seen, by :func:`_run_info`

    @classmethod
    def load(cls, data_dir: Traversable | None = None) -> Gazetteer:
        """The shipped lists (or those in ``data_dir``), with the index beside them when it
        was derived from them; else the index is derived here."""
        if data_dir is None:
            data_dir = resources.files("stalwart.guard").joinpath("data")
        raw = data_dir.joinpath(LISTS_FILE).read_bytes()
        data = json.loads(gzip.decompress(raw))
        # frozensets, which the constructor keeps as they are (no second copy of each list)
        return cls(
            frozenset(data["first"]), frozenset(data["last"]), frozenset(data["place"]),
            frozenset(data["common"]), index=_index_beside(data_dir, lists_sha256(raw)),
        )  # fmt: skip


def _index_beside(data_dir: Traversable, source_sha256: str) -> GazetteerIndex | None:
    """The index in ``data_dir`` if it was derived from the lists of that hash; None when it
    is missing, unreadable or stale (the caller derives it)."""
    try:
        shipped = json.loads(gzip.decompress(data_dir.joinpath(INDEX_FILE).read_bytes()))
        if shipped["source_sha256"] != source_sha256:
            return None
        return GazetteerIndex.from_json(shipped)
    except (OSError, EOFError, ValueError, KeyError, TypeError, AttributeError):
        return None


def lists_sha256(raw: bytes) -> str:
    """The SHA-256 an index records of the lists file (its compressed bytes)."""
    return hashlib.sha256(raw).hexdigest()


_LOCK = threading.Lock()
_LOADED: list[Gazetteer] = []


def gazetteer() -> Gazetteer:
    """The shipped lists (loaded on first call, then shared)."""
    if not _LOADED:
        with _LOCK:
            if not _LOADED:
                _LOADED.append(Gazetteer.load())
    return _LOADED[0]


@functools.lru_cache(maxsize=8192)  # as many as the runs remembered (_RUNS_REMEMBERED)
def _key(word: str) -> str:
    """The list form of a word: no possessive ending, no accents; remembered (a word with
    an accent costs a Unicode decomposition, and a text's new runs are mostly new
    combinations of the lists' words)."""
    if "'" in word or "\u2019" in word:
        word = word.removesuffix("\u2019s").removesuffix("'s")
    return fold(word)


def _cues(text: str, at: int) -> tuple[str, str]:
    """The two lower-case words just before ``at`` (nearest first), "" where there is none
    or a sentence ends in between."""
    parts = text[max(0, at - 30) : at].lower().split()
    if not parts:
        return "", ""
    if at > 30 and len(parts) == 1 and not text[at - 31].isspace():
        return "", ""  # the word was cut: no cue
    w1 = parts[-1].strip(_STRIP)
    if w1.rstrip("?") in _NAME_WORDS:  # "What's your last name? Fukuda"
        w1 = w1.rstrip("?")
    if w1.endswith((".", "!", "?")) and w1.rstrip(".") not in _TITLES:
        return "", ""
    w1 = w1.rstrip(".")
    w2 = parts[-2].strip(_STRIP) if len(parts) > 1 else ""
    if w2.endswith((".", "!", "?")):
        w2 = ""
    if w1 == "is" and w2 not in ("name", "this"):
        w1 = ""  # "it is", "order is": no cue
    elif w1 == "am" and w2 != "i":
        w1 = ""
    elif w1 in ("him", "her") and w2 in ("named", "called", "call"):
        w1 = "named"  # "She named him Keiran"
    return w1.removesuffix("'s").removesuffix("\u2019s"), w2


_NAME_WORDS = frozenset(("name", "names", "surname"))
# cues strong enough that even a common word after them is a name ("My name is John")
_STRONG_CUES = _NAME_WORDS | {"is", "named", "called"}
# a greeting or sign-off that starts a capitalised run ("Hi Landerico", "Dear Mr Okafor")
_LEAD_CUES = frozenset(
    ("hi", "hello", "hey", "dear", "thanks", "cheers", "regards", "sincerely", "signed", "attn")
)  # fmt: skip


def _cued(text: str, at: int) -> bool:
    """Whether the word just before ``at`` may be a cue (a cheap test before :func:`_cues`)."""
    parts = text[max(0, at - 16) : at].rsplit(None, 1)
    if not parts:
        return False
    cue = _CUE_WORDS.get(parts[-1])
    return _cue_word(parts[-1]) if cue is None else cue


def _cue_word(word: str) -> bool:
    """Whether ``word``, the word just before a run, may be a cue, remembered: the words
    before runs are few ("the", "to", "\n"), each judged once."""
    if len(_CUE_WORDS) > _RUNS_REMEMBERED:
        _CUE_WORDS.clear()
    cue = _CUE_WORDS[word] = word.lower().strip(_STRIP).rstrip(".?") in _ANY_CUE
    return cue


_CUE_WORDS: dict[str, bool] = {}


def _place_at(g: Gazetteer, keys: list[str], i: int) -> int:
    """How many words from ``keys[i]`` form a known place (0: none)."""
    most = g.place_heads.get(keys[i], 0)
    if most == 1:
        return 1 if keys[i] in g.places else 0
    left = len(keys) - i
    for n in g.place_lengths.get(keys[i], ()):  # only the lengths its places have
        if n <= left and " ".join(keys[i : i + n]) in g.places:
            return n
    return 0


def name_spans(text: str, g: Gazetteer | None = None, *, masked: str | None = None) -> list[Span]:
    """Person names, places and street addresses in ``text`` as (start, end, kind);
    ``masked``: :func:`mask_opaque` of ``text`` when the caller has it."""
    g = g or gazetteer()
    spans: list[Span] = []
    if any(c in text for c in "0123456789"):
        spans = address_spans(text, g, mask_opaque(text) if masked is None else masked)
    runs = g.runs
    if len(runs) > _RUNS_REMEMBERED:
        runs.clear()
    cue_words = _CUE_WORDS
    raws: list[str] = []  # every run: where a name's words can come back (:func:`_repeats`)
    for run in _CAPS.finditer(text):
        raw = run.group()
        raws.append(raw)
        info = runs.get(raw)
        if info is None:
            info = runs[raw] = _run_info(raw, g)
        what, words, keys, upper, lead, shift, shaped = info
        if what == _SHORT:  # "I", "OK"; a US state's code after ", " or before a ZIP code
            if raw in US_STATE_CODES and _state_at(text, run.start(), run.end()):
                spans.append((run.start(), run.end(), "location"))
            continue
        start = run.start() + shift
        if what == _PLACE_ENDING:  # "Castor Bay", "CABBAGE TREE CREEK"
            spans.append((start, run.end(), "location"))
            continue
        if what == _NAME:  # "Orla Mitchell"
            spans.append((start, run.end(), "person"))
            continue
        cued: bool | None = True  # a greeting that starts the run is its cue
        if not lead:  # :func:`_cued`, inline: the word just before the run may be a cue
            parts = text[start - 16 if start > 16 else 0 : start].rsplit(None, 1)
            cued = cue_words.get(parts[-1]) if parts else False
            if cued is None:
                cued = _cue_word(parts[-1])
        if what == _NONE_KNOWN:
            if not cued:
                if shaped[1]:  # "Ruman D. Bataev", "Ana Petrović": a name by its shape
                    spans.append((start + shaped[0], start + shaped[1], "person"))
                continue
            cue, before = (lead, "") if lead else _cues(text, start)
            first_key = keys[0].lower()
            if cue in _PLACE_PREPOSITIONS and before in _PLACE_VERBS and first_key not in _ANY_CUE:
                # "returned to WEENGALLON", "I am in Victoria": after such words, a place
                spans.append((start, _cut(run.end(), words), "location"))
                continue
            if upper:
                continue  # "NOTE", "TODO": nothing to look at
            if keys[0] in g.common and cue not in _STRONG_CUES:
                if shaped[1]:  # "to Tom I. Holzman"
                    spans.append((start + shaped[0], start + shaped[1], "person"))
                continue  # "The", "Please"; but "My name is John"
            if (
                (cue in _NAME_CUES or cue in _TITLES)
                and first_key not in _NAME_CUES
                and first_key not in _WEAK_CUES
                and text[start - 1 : start] not in ("=", "/", "_")
            ):  # "my name is Alterio", "Hi Jo,": a name whatever the lists say
                spans.append((start, _cut(run.end(), words), "person"))
            elif shaped[1]:
                spans.append((start + shaped[0], start + shaped[1], "person"))
            continue
        if what == _COMMON:
            if not cued:
                continue
            cue, before = _cues(text, start)
            if not _keeps_common(cue, before):
                continue
        elif lead:
            cue, before = lead, ""
        elif cued:
            cue, before = _cues(text, start)
        else:
            cue = before = ""
        if len(words) == 1:
            _read_word(text, start, words[0], keys[0], g, spans, upper, cue, before)
            continue
        found = len(spans)
        _read_run(text, start, words, keys, g, spans, upper, cue, before)
        if shaped[1]:  # "Producer John Blakey", "Max N. Schmitz": a name by its shape
            add_shaped(spans, found, start + shaped[0], start + shaped[1])
    spans += _repeats(text, spans, g, "\n".join(raws))
    # what an earlier pass already redacted is no name: redacting twice must change nothing
    if "[REDACTED:" in text:
        done = [(m.start(), m.end()) for m in _REDACTED.finditer(text)]
        spans = [s for s in spans if not any(s[0] < end and start < s[1] for start, end in done)]
    return spans


# what a capitalised run is, whatever its context (:func:`_run_info`)
_SHORT, _PLACE_ENDING, _NONE_KNOWN, _COMMON, _READ, _NAME = range(6)
_RUNS_REMEMBERED = 8192


_Run = tuple[int, list[str], list[str], bool, str, int, tuple[int, int]]
"""What a capitalised run is by its words alone, remembered per run in
:attr:`Gazetteer.runs` (the same runs, "The", "Apt", "Street", come back in every text), so
that only what depends on the words around it is worked out per text: (which rule decides
it, its words, their list forms, whether it is in capitals, its leading greeting, how far
its name starts after the greeting, where the name it is by its shape alone starts and ends
after that: :func:`stalwart.guard._shapes.shaped_name`)."""


def _run_info(raw: str, g: Gazetteer) -> _Run:
    """What :func:`name_spans` needs of a capitalised run that does not depend on the text
    around it: its words and their list forms, a leading greeting ("Hi Landerico"), and
    which rule decides it (``shaped``: where the name it is with no cue before it, by its
    shape, starts and ends, :func:`stalwart.guard._shapes.shaped_name`)."""
    upper = raw.isupper()
    if " " not in raw:  # one word (most runs): no greeting, no place ending, no shape
        if upper:
            if len(raw) < 3:
                return (_SHORT, [raw], [raw], True, "", 0, NO_SHAPE)
            key = _key(raw.capitalize())
        elif raw.isascii() and "'" not in raw:
            key = raw
        else:
            key = _key(raw)
        if key not in g.known:
            if not upper and shaped_place([raw], [key], g):  # "Pottersville", "Kevinmouth"
                return (_PLACE_ENDING, [raw], [key], upper, "", 0, NO_SHAPE)
            return (_NONE_KNOWN, [raw], [key], upper, "", 0, NO_SHAPE)
        what = _COMMON if key in g.common and key not in g.places else _READ
        return (what, [raw], [key], upper, "", 0, NO_SHAPE)
    words = raw.split(" ")
    if upper and len(raw) < 3:
        return (_SHORT, words, words, True, "", 0, NO_SHAPE)
    if upper:
        keys = [_key(w.capitalize()) for w in words]
    elif raw.isascii() and "'" not in raw:
        keys = words
    else:
        keys = [_key(w) for w in words]
    lead, shift = "", 0
    if words[0].lower() in _LEAD_CUES:
        lead = words[0].lower()  # "Hi Landerico": the greeting is the cue
        shift = len(words[0]) + 1
        words, keys = words[1:], keys[1:]
    if (
        1 < len(words) <= 4
        and words[-1].lower() in PLACE_ENDINGS
        and keys[0] not in g.common
        and keys[0] not in g.first
        and keys[0].lower() not in _ANY_CUE
    ):  # "Castor Bay", "CABBAGE TREE CREEK": the last word says it is a place
        return (_PLACE_ENDING, words, keys, upper, lead, shift, NO_SHAPE)
    if not upper and shaped_place(words, keys, g):  # "East Christopher", "Lake Jennifer"
        return (_PLACE_ENDING, words, keys, upper, lead, shift, NO_SHAPE)
    if g.known.isdisjoint(keys):
        shaped = NO_SHAPE if upper or len(words) < 2 else shaped_name(words, keys, g)
        return (_NONE_KNOWN, words, keys, upper, lead, shift, shaped)
    if len(words) == 1 and keys[0] in g.common and keys[0] not in g.places:
        return (_COMMON, words, keys, upper, lead, shift, NO_SHAPE)
    if (
        len(words) == 2
        and not upper
        and keys[0] in g.first
        and keys[0] not in g.place_heads
        and keys[0].lower().rstrip(".") not in _TITLES
        and (keys[1] in g.last or keys[1] not in g.place_heads)
    ):  # "Orla Mitchell": a given name and a surname (or no place) is a name after any
        return (_NAME, words, keys, upper, lead, shift, NO_SHAPE)  # cue (:func:`_read_run`)
    # a run of listed words only is the lists' to read: every shape needs a word they lack,
    # or a given name they hold as a place ("Florence Nightingale")
    readable = (
        not upper
        and len(words) > 1
        and (not g.known.issuperset(keys) or not COMMON_GIVEN.isdisjoint(map(str.lower, keys)))
    )
    shaped = shaped_name(words, keys, g) if readable else NO_SHAPE
    return (_READ, words, keys, upper, lead, shift, shaped)


def _keeps_common(cue: str, before: str) -> bool:
    """Whether a common word alone after this cue is a name or a place ("Dr Moss", "my name
    is Will", "flew to MOSS", "I am in Victoria")."""
    return (
        cue in _TITLES
        or cue in _STRONG_CUES
        or (cue in _PLACE_PREPOSITIONS and before in _PLACE_VERBS)
    )


def _state_at(text: str, start: int, end: int) -> bool:
    """Whether the US state code at ``start`` is one: after ", " or before a ZIP code."""
    if text[start - 2 : start] == ", ":
        return True
    return _ZIP.match(text, end) is not None


def _cut(end: int, words: list[str]) -> int:
    """The end of a run of at most four words (a longer run keeps its first four)."""
    if len(words) <= 4:
        return end
    return end - sum(len(w) + 1 for w in words[4:])


def _read_run(  # noqa: PLR0917 - one call site, per run: positional is the cheaper call
    text: str,
    start: int,
    words: list[str],
    keys: list[str],
    g: Gazetteer,
    spans: list[Span],
    upper: bool,
    cue: str,
    before: str,
) -> None:
    """The names and places in one capitalised run that holds a known word (in an upper-case
    run, "IBAN", "HELSINKI", only places and names after a title)."""
    first, last, heads = g.first, g.last, g.place_heads
    if upper:
        first = last = frozenset()
    offsets: list[int] = []
    pos = start
    for w in words:
        offsets.append(pos)
        pos += len(w) + 1
    titled = cue in _TITLES
    done = 0  # words before this index belong to a span already
    place_cue = cue in _PLACE_PREPOSITIONS and before in _PLACE_VERBS
    i = 0
    n_words = len(words)
    while i < n_words:
        key = keys[i]
        n_place = _place_at(g, keys, i) if key in heads else 0
        if key.lower().rstrip(".") in _TITLES and i + 1 < n_words:
            titled, i = True, i + 1
            continue
        is_first = key in first
        nxt = keys[i + 1] if i + 1 < n_words else ""
        name_len = 0
        if place_cue and i == 0 and (n_place or not is_first or n_words == 1):
            n_place = max(n_place, min(n_words, 4))  # "flew to Pines Beach"
        elif titled or (
            is_first and nxt and (nxt in last or nxt not in heads or not _place_at(g, keys, i + 1))
        ):
            name_len = 1
            while i + name_len < n_words and name_len < 4:
                k = keys[i + name_len]
                if k in heads and _place_at(g, keys, i + name_len) and k not in last:
                    break
                name_len += 1
        elif (
            i == 0
            and cue in _NAME_CUES
            and not n_place
            and key not in g.common
            and not words[0].isupper()  # "user=GB96..." is a value, not "my name is"
            and key.lower() not in _NAME_CUES  # "Thanks.. Thanks!"
            and key.lower() not in _WEAK_CUES
            and text[start - 1 : start] not in ("=", "/", "_")
        ):
            name_len = 1  # "my name is Alterio", "Hi Jo,": a name whatever the lists say
            while name_len < min(n_words, 4) and not (
                keys[name_len] in heads and _place_at(g, keys, name_len)
            ):
                name_len += 1
        elif (is_first or key in last) and not n_place:
            possessive = words[i].endswith(("'s", "\u2019s"))
            cued = i == 0 and (cue in _WEAK_CUES or cue in _NAME_CUES)
            if i > 0 or is_first or possessive or cued:
                name_len = 1
        if name_len:
            end = offsets[i + name_len - 1] + len(words[i + name_len - 1])
            first_word = i
            while first_word > done and _given_before(words[first_word - 1], keys, g):
                first_word -= 1  # "Otniel L. Alonso", "Leonida De Luca": the given names too
            spans.append((offsets[first_word], end, "person"))
            i += name_len
            done = i
            titled = False
            continue
        if n_place:
            end = offsets[i + n_place - 1] + len(words[i + n_place - 1])
            post = _POSTCODE.match(text, end)
            spans.append((offsets[i], end, "location"))
            if post is not None:
                spans.append((post.start() + 1, post.end(), "address"))
            i += n_place
            done = i
            continue
        i += 1


def _read_word(  # noqa: PLR0917 - one call site, per run: positional is the cheaper call
    text: str,
    start: int,
    word: str,
    key: str,
    g: Gazetteer,
    spans: list[Span],
    upper: bool,
    cue: str,
    before: str,
) -> None:
    """:func:`_read_run` of a run of one word ("Tunisia", "Helena", "Pittman's"), the same
    rules without the walk over words: a place after a place cue, a name after a title or a
    cue, a listed given name or surname alone as a possessive or after a weak cue; else a
    listed place."""
    is_place = key in g.places
    if cue in _PLACE_PREPOSITIONS and before in _PLACE_VERBS:
        is_place = True  # "flew to Pines"
    elif (
        cue in _TITLES
        or (
            cue in _NAME_CUES
            and not is_place
            and key not in g.common
            and not word.isupper()  # "user=GB96..." is a value, not "my name is"
            and key.lower() not in _NAME_CUES  # "Thanks.. Thanks!"
            and key.lower() not in _WEAK_CUES
            and text[start - 1 : start] not in ("=", "/", "_")
        )
    ):
        spans.append((start, start + len(word), "person"))
        return
    elif not upper and (key in g.first or key in g.last) and not is_place:
        if (
            key in g.first
            or word.endswith(("'s", "\u2019s"))
            or cue in _WEAK_CUES
            or cue in _NAME_CUES
        ):
            spans.append((start, start + len(word), "person"))
        return
    if is_place:
        end = start + len(word)
        spans.append((start, end, "location"))
        post = _POSTCODE.match(text, end)
        if post is not None:
            spans.append((post.start() + 1, post.end(), "address"))


def _given_before(word: str, keys: list[str], g: Gazetteer) -> bool:
    """Whether ``word``, just before a name found in the same run, belongs to it: an
    initial, a particle ("De", "van"), or a capitalised word that is neither common, nor a
    title, nor a place."""
    if _INITIAL.fullmatch(word) or word.lower() in _PARTICLES:
        return True
    key = _key(word)
    return (
        not word.isupper()
        and key not in g.common
        and key.lower().rstrip(".") not in _TITLES
        and key not in g.place_heads
    )


def _repeats(text: str, spans: list[Span], g: Gazetteer, runs: str) -> list[Span]:
    """Every other occurrence of a word of a name already found ("Kuyra had given Kuyra").

    ``runs``: the text's capitalised runs, joined by line breaks. A word occurs alone (no
    letter, digit or "_" on either side) only inside a run: where it starts, a run starts
    or goes on, and a run's word takes every letter, "'" and "-" that follows. So a word
    that the runs hold once has no other occurrence, and the runs, a third of the text,
    are what is counted."""
    words: set[str] = set()
    for start, end, kind in spans:
        if kind == "person":
            for found in _NAME_WORD.findall(text, start, end):
                w = found.removesuffix("'s").removesuffix("\u2019s")
                if len(w) >= 3 and w not in g.common:
                    words.add(w)
    out: list[Span] = []
    marked = "[REDACTED:" in text  # then the names found may be dropped: repeats kept whole
    for w in words:
        if not marked and runs.count(w) < 2:
            continue  # its one occurrence is in the name it came from (most names)
        at = text.find(w)
        while at >= 0:
            end = at + len(w)
            before = text[at - 1 : at] if at else ""
            after = text[end : end + 1]
            if not (before.isalnum() or before == "_") and not (after.isalnum() or after == "_"):
                out.append((at, end, "person"))
            at = text.find(w, end)
    return out
