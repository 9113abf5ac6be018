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
# the word just before a capitalised run that says a name follows ("my name is", "Hi",
# "Dear", "my partner's name"), and weaker ones that only confirm a listed name ("to", "by")
_NAME_CUES = frozenset(
    ("is", "named", "called", "dear", "hi", "hello", "hey", "signed", "sincerely", "regards",
     "cheers", "thanks", "kid", "child", "son", "daughter", "partner", "wife", "husband",
     "mother", "father", "guardian", "user", "customer", "patient", "attn", "name", "names",
     "surname", "am", "i'm", "mr", "mrs", "ms", "dr")
)  # fmt: skip
_WEAK_CUES = frozenset(
    ("from", "by", "with", "to", "tell", "call", "ask", "contact", "for", "and", "cc", "met")
)  # fmt: skip
_BEFORE_WORDS = re.compile(r"[a-z']+")
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
_STREET_SET = frozenset(_STREET_WORDS.split("|"))
_PREFIX_SET = frozenset(_STREET_PREFIX.split("|"))
_UNIT_SET = frozenset(_UNIT_WORDS.split("|"))
# Street addresses are found word by word: a street word looks back for its house number
# ("221 Baker Street"), a street prefix forward for its number ("Avenida Noruega 42"), a
# unit word for its number ("Apt. 5"); a set lookup per word, an anchored match per hit.
_STREET_BACK = re.compile(
    rf"(?<![\w.,-]){_HOUSE}[ ,]+(?:(?:{_WORD}|\d{{1,3}}(?:st|nd|rd|th))[ ]+){{0,4}}$"
)
_PREFIX_FORWARD = re.compile(
    rf"\.?[ ]+(?:(?:{_WORD}|{_PARTICLE}|des)[ ]*){{1,5}},?[ ]*{_HOUSE}(?!\d)"
)
_UNIT_FORWARD = re.compile(r"\.?[ ]*#?[ ]*\d{1,5}[A-Za-z]?\b")
_NUMBER_AFTER = re.compile(r"[ ]\d{1,5}[a-z]?\b")
_ADDRESS_FORMS: tuple[tuple[frozenset[str] | None, re.Pattern[str]], ...] = (
    (
        frozenset({"box", "po", "postfach", "apartado"}),
        re.compile(r"\b(?i:p\.?[ ]?o\.?[ ]?box|postfach|apartado)[ ]*\d{1,6}\b"),
    ),
    (
        frozenset({"psc", "usns", "usnv", "uss", "uscgc", "apo", "fpo", "dpo"}),
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
_ADDRESS_WORDS = _STREET_SET | _PREFIX_SET | _UNIT_SET
_COMPOUND_ENDINGS = tuple(_COMPOUND_SUFFIX.split("|"))
_WORD_BEFORE_NUMBER = re.compile(r"\b([^\W\d_]{4,})[ ]\d{1,5}[a-z]?\b")
_TITLE_TAIL = re.compile(rf"(?i:\b(?:{'|'.join(sorted(_TITLES))}))\.?\s+$")
_LOWER_WORDS = re.compile(r"[^\W\d_]+")


def _last_word(text: str, at: int) -> str:
    """The lower-case word just before ``at`` ("" if none within 24 characters)."""
    words: list[str] = _BEFORE_WORDS.findall(text[max(0, at - 24) : at].lower())
    if not words:
        return ""
    last = words[-1]
    if last == "is" and len(words) > 1 and words[-2] not in ("name", "this"):
        return ""  # "it is", "order is": no cue
    if last == "am" and (len(words) < 2 or words[-2] != "i"):
        return ""
    return last.removesuffix("'s")


_NUMBERS_BEFORE = re.compile(r"(?<![\d,] )(?:\d{1,6}[ ]+)+$")
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
    for at, end in _addresses(text):
        numbers = _NUMBERS_BEFORE.search(text, max(0, at - 24), at)
        # "09788 43 Rue Hegel": the numbers before the street too
        spans.append((at if numbers is None else numbers.start(), end, "address"))
    for run in _CAPS.finditer(text):
        words = run.group().split(" ")
        if (  # "The", "Your": nothing to look at
            len(words) == 1
            and words[0] in g.common
            and _TITLE_TAIL.search(text, max(0, run.start() - 8), run.start()) is None
        ):
            continue
        offsets: list[int] = []
        pos = run.start()
        for w in words:
            offsets.append(pos)
            pos += len(w) + 1
        cue = _last_word(text, run.start())
        titled = cue in _TITLES
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
                i == 0
                and cue in _NAME_CUES
                and not n_place
                and _bare(word) not in g.common
                and not word.isupper()  # "user=GB96..." is a value, not "my name is"
                and word.lower() not in _NAME_CUES  # "Thanks.. Thanks!"
                and word.lower() not in _WEAK_CUES
                and text[run.start() - 1 : run.start()] not in ("=", "/", "_")
            ):
                name_len = 1  # "my name is Alterio", "Hi Jo,": a name whatever the lists say
                while name_len < min(len(words), 4) and not _place_at(g, words, name_len):
                    name_len += 1
            elif (is_first or word in g.last) and not n_place:
                weak = i == 0 and (cue in _WEAK_CUES or cue in _NAME_CUES)
                if weak or i > 0 or is_first:
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
    # what an earlier pass already redacted is no name: redacting twice must change nothing
    done = [(m.start(), m.end()) for m in _REDACTED.finditer(text)]
    if done:
        spans = [s for s in spans if not any(s[0] < end and start < s[1] for start, end in done)]
    return spans


_REDACTED = re.compile(r"\[REDACTED:[a-z_]+\]")


def _addresses(text: str) -> list[tuple[int, int]]:
    """(start, end) of every street address in ``text``."""
    if not any(c.isdigit() for c in text):
        return []
    words = set(_LOWER_WORDS.findall(text.lower()))
    found: list[tuple[int, int]] = []
    if not words.isdisjoint(_ADDRESS_WORDS):
        for m in _LOWER_WORDS.finditer(text):
            word = m.group().lower()
            if word in _STREET_SET:
                back = _STREET_BACK.search(text, max(0, m.start() - 90), m.start())
                if back is not None:
                    end = m.end() + (text[m.end() : m.end() + 1] == ".")
                    found.append((back.start(), end))
            if word in _PREFIX_SET:
                forward = _PREFIX_FORWARD.match(text, m.end())
                if forward is not None:
                    found.append((m.start(), forward.end()))
            if word in _UNIT_SET:
                forward = _UNIT_FORWARD.match(text, m.end())
                if forward is not None:
                    found.append((m.start(), forward.end()))
    for m in _WORD_BEFORE_NUMBER.finditer(text):  # "Kirchenallee 68"
        if m.group(1)[0].isupper() and m.group(1).lower().endswith(_COMPOUND_ENDINGS):
            found.append((m.start(), m.end()))
    for needs, pattern in _ADDRESS_FORMS:
        if needs is None or not needs.isdisjoint(words):
            found += ((x.start(), x.end()) for x in pattern.finditer(text))
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
