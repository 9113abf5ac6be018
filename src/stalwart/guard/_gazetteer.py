"""Names, places and street addresses for the fast redaction tier, without a model.

- **Person names**: runs of capitalised words where a word is a known given name
  (followed by another capitalised word or an initial), follows a title (``Mr``, ``Dr``…)
  or a cue (``my name is``, ``Dear``, ``signed``), or is a known given name or surname
  standing alone; the given-name and surname lists come from Faker, cities and countries
  from GeoNames (``data/gazetteer.json.gz``; provenance in ``data/NOTICE.md``; common
  English words were removed from the lists when it was built, by
  ``bench/build_gazetteer.py``).
- **Places**: a capitalised run that is, or starts with, a known city, country or US state
  (the longest name wins: "New York", "Czech Republic").
- **Street addresses**: a house number with words ending in a street word ("12 Baker
  Street", "Avenida Noruega 42", "Via Roma 5"), unit lines ("Apt. 5", "Suite 210"),
  P.O. boxes, and a postcode after a place.

The lists are loaded once, on first use (about 60,000 entries, a few MB).
"""

from __future__ import annotations

import gzip
import json
import re
import threading
from importlib import resources

__all__ = ["Gazetteer", "gazetteer", "name_spans"]

Span = tuple[int, int, str]

_WORD = r"[A-ZÀ-ÖØ-Þ](?:[^\W\d_]|['\u2019-])+"
_PARTICLE = r"(?:de|da|do|dos|van|von|der|den|del|la|le|di|du|bin|ibn|al)"
_CAPS = re.compile(
    rf"{_WORD}(?:[ ](?:[A-Z]\.?(?=[ ])|{_WORD}|{_PARTICLE}(?:[ ]{_PARTICLE})?(?=[ ][A-ZÀ-ÖØ-Þ])))*"
)
_TITLES = frozenset(
    ("mr", "mrs", "ms", "miss", "mx", "dr", "prof", "sir", "madam", "mme", "mlle", "herr",
     "frau", "sr", "sra", "sig", "dott")
)  # fmt: skip
_NAME_CUE = re.compile(
    r"(?i:\b(?:my\s+name\s+is|name\s+is|names?|named|called|i\s+am|i'm|this\s+is|dear|"
    r"hi|hello|hey|signed|sincerely|regards|cheers|thanks|kid|child|son|daughter|partner|"
    r"wife|husband|mother|father|guardian|user|customer|patient|mr|mrs|ms|dr|attn|"
    r"last\s+name\?|first\s+name\?|surname\?|account\?(?:\s+user:)?))"
    r"(?:'s)?[\s,:]*$"
)
_CUE = re.compile(
    r"(?i:\b(?:name\s+is|named|i\s+am|i'm|this\s+is|dear|hi|hello|hey|thanks|regards|"
    r"signed|sincerely|cheers|from|by|with|to|tell|call|ask|contact|for|and|customer|"
    r"user|patient|guardian|attn|cc)\b)[\s,:]*$"
)
_STREET_WORDS = (
    "street|st|avenue|ave|road|rd|lane|ln|drive|dr|boulevard|blvd|court|ct|way|place|pl|"
    "terrace|ter|circle|cir|square|sq|highway|hwy|parkway|pkwy|crescent|close|grove|row|"
    "alley|trail|plaza|path|pike|walk|gardens|mews|hill|park|view|straße|strasse|str|"
    "gasse|weg|allee|platz|ring|damm|ufer|straat|laan|plein|gracht|vej|gade|gatan|vägen|"
    "veien|gata|katu|tie|utca|út|ulica|ul|ulice|cesta|calle|street"
)
_STREET_PREFIX = (
    "rue|avenue|boulevard|bd|chemin|place|allée|impasse|quai|route|via|viale|piazza|corso|"
    "largo|vicolo|calle|avenida|av|avda|plaza|paseo|camino|carrer|rua|travessa|praça|"
    "estrada|alameda|rodovia|ulica|ul|aleja|al|strada|bulevardul|calea|sokak|caddesi"
)
_COMPOUND_SUFFIX = (
    "straat|weg|allee|strasse|straße|gasse|vej|gade|gatan|vägen|veien|tie|katu|laan|plein|"
    "platz|ring|damm|ufer|steig|stieg|pfad|stræde|gränd|torget|plads|utca"
)
_HOUSE = r"\d{1,5}[A-Za-z]?(?:[-/]\d{1,4})?"
_UNIT_WORDS = "apt|apartment|suite|ste|unit|flat|floor|fl|room|rm|bldg|building"
_MILITARY = frozenset({"psc", "usns", "usnv", "uss", "uscgc", "apo", "fpo", "dpo"})
# Each form of street address is its own pattern, run only when a word it needs is in the
# text (one pass collects the words): most log lines hold none and cost one findall.
_ADDRESS_FORMS: tuple[tuple[frozenset[str] | None, re.Pattern[str]], ...] = (
    (
        frozenset(_STREET_WORDS.split("|")),
        re.compile(
            rf"(?<![\w.,-]){_HOUSE}[ ,]+(?:{_WORD}[ ]+|\d{{1,3}}(?:st|nd|rd|th)[ ]+){{0,4}}"
            rf"(?i:{_STREET_WORDS})\b\.?"
        ),
    ),
    (
        frozenset(_STREET_PREFIX.split("|")),
        re.compile(
            rf"\b(?i:{_STREET_PREFIX})\.?[ ]+(?:(?:{_WORD}|{_PARTICLE}|des)[ ]*){{1,5}}"
            rf",?[ ]*{_HOUSE}(?!\d)"
        ),
    ),
    (
        frozenset(_UNIT_WORDS.split("|")),
        re.compile(rf"\b(?i:{_UNIT_WORDS})\.?[ ]*#?[ ]*\d{{1,5}}[A-Za-z]?\b"),
    ),
    (
        frozenset({"box", "po", "postfach", "apartado"}),
        re.compile(r"\b(?i:p\.?[ ]?o\.?[ ]?box|postfach|apartado)[ ]*\d{1,6}\b"),
    ),
    (
        _MILITARY,
        re.compile(
            r"\b(?:PSC|USNS|USNV|USS|USCGC)[ ][\w ]{1,30}?(?:,[ ]Box[ ]\d{1,5})?(?=\n|,|$)"
            r"|\b(?:APO|FPO|DPO)[ ](?:AA|AE|AP)[ ]\d{5}\b"
        ),
    ),
    (  # "16475 Trg revolucije 61" at the end of a line or before a comma
        None,
        re.compile(
            rf"(?<![\w.])\d{{1,5}}[ ]+{_WORD}(?:[ ]+(?:{_WORD}|[a-zà-ÿ]{{2,}})){{0,3}}[ ]+{_HOUSE}"
            rf"(?=[ ]*(?:\n|,|$))"
        ),
    ),
)
_COMPOUND_STREET = re.compile(rf"\b[A-ZÀ-ÖØ-Þ][^\W\d_]*(?i:{_COMPOUND_SUFFIX})[ ]\d{{1,5}}[a-z]?\b")
_COMPOUND_ENDINGS = tuple(_COMPOUND_SUFFIX.split("|"))
_LOWER_WORDS = re.compile(r"[^\W\d_]+")
_TITLE_BEFORE = re.compile(rf"(?i:\b(?:{'|'.join(sorted(_TITLES))}))\.?\s*$")
_NUMBERS_BEFORE = re.compile(r"(?:\d{1,6}[ ,]+)+$")
_POSTCODE = re.compile(
    r"[ ,]+(?:\d{5}(?:-\d{4})?|\d{4}(?:-\d{3})?|\d{3}[ ]?\d{2}|\d{2}-\d{3}"
    r"|[A-Z]{1,2}\d[A-Z\d]?[ ]?\d[A-Z]{2}|[A-Z]\d[A-Z][ ]?\d[A-Z]\d)(?![\w-])"
)
_BLOCK_PART = (
    rf"(?:{_WORD}|[A-Z]{{2,3}}|\d{{3,6}}(?:-\d{{3,4}})?|[A-Z]\d[A-Z][ ]?\d[A-Z]\d|{_PARTICLE})"
)
_BLOCK_LINE = re.compile(rf"[ \t,]*({_BLOCK_PART}(?:[ ,]+{_BLOCK_PART}){{0,5}})[ \t.,?!]*")
_STATE_ABBR = frozenset(
    ("AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "FL", "GA", "HI", "ID", "IL", "IN", "IA",
     "KS", "KY", "LA", "ME", "MD", "MA", "MI", "MN", "MS", "MO", "MT", "NE", "NV", "NH", "NJ",
     "NM", "NY", "NC", "ND", "OH", "OK", "OR", "PA", "RI", "SC", "SD", "TN", "TX", "UT", "VT",
     "VA", "WA", "WV", "WI", "WY", "DC")
)  # fmt: skip


class Gazetteer:
    """The name and place lists, as sets (the data file's lists, nothing added)."""

    def __init__(
        self,
        first: set[str],
        last: set[str],
        places: set[str],
        common: frozenset[str] | set[str] = frozenset(),
    ) -> None:
        self.common = frozenset(w.capitalize() for w in common)
        self.first = frozenset(first)
        self.last = frozenset(last)
        self.places = frozenset(places)
        longest: dict[str, int] = {}
        for place in places:
            head = place.split(" ", 1)[0]
            longest[head] = max(longest.get(head, 0), place.count(" ") + 1)
        self.place_heads = longest  # first word -> the most words a place starting with it has

    @classmethod
    def load(cls) -> Gazetteer:
        raw = resources.files("stalwart.guard").joinpath("data/gazetteer.json.gz").read_bytes()
        data = json.loads(gzip.decompress(raw))
        return cls(set(data["first"]), set(data["last"]), set(data["place"]), set(data["common"]))


_LOCK = threading.Lock()
_LOADED: list[Gazetteer] = []


def gazetteer() -> Gazetteer:
    """The shipped lists (loaded on first call, then shared)."""
    if not _LOADED:
        with _LOCK:
            if not _LOADED:
                _LOADED.append(Gazetteer.load())
    return _LOADED[0]


def _bare(word: str) -> str:
    """``word`` without a possessive ending."""
    return word.removesuffix("\u2019s").removesuffix("'s")


def _place_at(g: Gazetteer, words: list[str], i: int) -> int:
    """How many words from ``words[i]`` form a known place (0: none)."""
    most = g.place_heads.get(words[i], 0)
    for n in range(min(most, len(words) - i), 0, -1):
        if " ".join(words[i : i + n]) in g.places:
            return n
    return 0


def name_spans(text: str, g: Gazetteer | None = None) -> list[Span]:
    """Person names, places and street addresses in ``text`` as (start, end, kind)."""
    g = g or gazetteer()
    spans: list[Span] = []
    for m in _addresses(text):
        start = m.start()
        numbers = _NUMBERS_BEFORE.search(text, max(0, start - 24), start)
        if numbers is not None:  # "09788 43 Rue Hegel": the numbers before the street too
            start = numbers.start()
        spans.append((start, m.end(), "address"))
    for run in _CAPS.finditer(text):
        words = run.group().split(" ")
        if len(words) == 1 and words[0] in g.common:  # "The", "Your": nothing to look at
            head = text[max(0, run.start() - 6) : run.start()]
            if _TITLE_BEFORE.search(head) is None:
                continue
        offsets: list[int] = []
        pos = run.start()
        for w in words:
            offsets.append(pos)
            pos += len(w) + 1
        before = text[max(0, run.start() - 24) : run.start()]
        titled = _TITLE_BEFORE.search(before) is not None
        i = 0
        while i < len(words):
            word = words[i]
            n_place = _place_at(g, words, i)
            if word.lower().rstrip(".") in _TITLES and i + 1 < len(words):
                titled, i = True, i + 1
                continue
            is_first = word in g.first
            nxt = words[i + 1] if i + 1 < len(words) else ""
            name_len = 0
            if titled or (is_first and nxt and (nxt in g.last or not _place_at(g, words, i + 1))):
                name_len = 1
                while i + name_len < len(words) and name_len < 4:
                    follower = words[i + name_len]
                    if _place_at(g, words, i + name_len) and follower not in g.last:
                        break
                    name_len += 1
            elif (
                i == 0 and _NAME_CUE.search(before) and not n_place and _bare(word) not in g.common
            ):
                name_len = 1  # "my name is Alterio", "Hi Jo,": a name whatever the lists say
                while name_len < min(len(words), 4) and not _place_at(g, words, name_len):
                    name_len += 1
            elif (is_first or word in g.last) and not n_place:
                cue = i == 0 and _CUE.search(before) is not None
                if cue or i > 0 or is_first:
                    name_len = 1
            if name_len:
                end = offsets[i + name_len - 1] + len(words[i + name_len - 1])
                spans.append((offsets[i], end, "person"))
                i += name_len
                titled = False
                continue
            if n_place:
                end = offsets[i + n_place - 1] + len(words[i + n_place - 1])
                post = _POSTCODE.match(text, end)
                spans.append((offsets[i], end, "location"))
                if post is not None:
                    spans.append((post.start() + 1, post.end(), "address"))
                i += n_place
                continue
            i += 1
    spans += _block_lines(text, spans)
    spans += _repeats(text, spans, g)
    for m in re.finditer(r"(?<=[ ,])([A-Z]{2})(?:[ ]+(\d{5}(?:-\d{4})?))?\b", text):
        if m.group(1) in _STATE_ABBR and (m.group(2) or text[m.start() - 2 : m.start()] == ", "):
            spans.append((m.start(), m.end(), "location"))
    return spans


def _addresses(text: str) -> list[re.Match[str]]:
    """Matches of every street-address form whose words occur in ``text``."""
    has_digit = any(c.isdigit() for c in text)
    if not has_digit:
        return []
    words = set(_LOWER_WORDS.findall(text.lower()))
    found: list[re.Match[str]] = []
    for needs, pattern in _ADDRESS_FORMS:
        if needs is None or not needs.isdisjoint(words):
            found += pattern.finditer(text)
    if any(w.endswith(_COMPOUND_ENDINGS) for w in words):
        found += _COMPOUND_STREET.finditer(text)
    return found


def _block_lines(text: str, spans: list[Span]) -> list[Span]:
    """The lines of an address block after a street line: short capitalised lines (city,
    region, country, postcode) up to three, each redacted whole."""
    out: list[Span] = []
    for _, end, kind in spans:
        if kind != "address":
            continue
        pos = text.find("\n", end)
        rest = _BLOCK_LINE.fullmatch(text, end, len(text) if pos < 0 else pos)
        if rest is not None and rest.group(1):  # ", HELSINKI, Finland 73030" on the same line
            out.append((rest.start(1), rest.end(1), "location"))
        for _ in range(3):
            if pos < 0:
                break
            nxt = text.find("\n", pos + 1)
            line_end = len(text) if nxt < 0 else nxt
            m = _BLOCK_LINE.fullmatch(text, pos + 1, line_end)
            if m is None:
                break
            out.append((m.start(1), m.end(1), "location"))
            pos = nxt
    return out


def _repeats(text: str, spans: list[Span], g: Gazetteer) -> list[Span]:
    """Every other occurrence of a word of a name already found ("Kuyra had given Kuyra")."""
    words: set[str] = set()
    for start, end, kind in spans:
        if kind == "person":
            words |= {
                w for w in re.findall(_WORD, text[start:end]) if len(w) >= 3 and w not in g.common
            }
    if not words:
        return []
    pattern = re.compile(r"\b(?:" + "|".join(map(re.escape, sorted(words))) + r")\b")
    return [(m.start(), m.end(), "person") for m in pattern.finditer(text)]
