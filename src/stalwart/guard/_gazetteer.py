"""Names, places and street addresses for the fast redaction tier, without a model.

- **Person names**: runs of capitalised words where a word is a known given name
  (followed by another capitalised word or an initial), follows a title (``Mr``, ``Dr``…)
  or a cue (``my name is``, ``Dear``, ``signed``), is a known given name or surname standing
  alone (``Pittman's``), or is followed by a surname of a common shape (``-dóttir``,
  ``-ović``, ``-enko``); the given-name and surname lists come from Faker, places from
  GeoNames (``data/gazetteer.json.gz``; provenance in ``data/NOTICE.md``; common English
  words were removed from the lists when it was built, by ``bench/build_gazetteer.py``).
- **Places**: a capitalised run (or an upper-case one: ``HELSINKI``) that is, or starts
  with, a known city, region, country or US state (the longest name wins: "New York",
  "Ústí nad Labem"), compared without accents; or any capitalised run after words that
  say a place follows ("originally from", "flew to", "I'm in").
- **Street addresses**: a house number with words ending in a street word ("12 Baker
  Street"), a street word then a number ("Avenida Noruega 42", "Síp utca 17",
  "Kirchenallee 68"), a number, a street name and a number ("7007 Štefanikova 1878"),
  unit lines ("Apt. 5"), P.O. boxes, military addresses and street corners; each is
  extended over what follows it in an address (unit, city, region, postcode, country, on
  the same line or the next ones).

Speed: every pattern here starts with a character class the regex engine checks in C
(a digit, a capital), so a text is read a few times by compiled patterns and Python code
runs only per capitalised run and per candidate address; a run none of whose words is
known, after no cue, costs a set lookup. What a run is by its words alone is remembered
(:attr:`Gazetteer.runs`), so a run read before costs a dictionary lookup and the work that
depends on the words around it. The lists are loaded once, on first use.
"""

from __future__ import annotations

import gzip
import json
import re
import threading
import unicodedata
from importlib import resources

__all__ = ["Gazetteer", "fold", "gazetteer", "mask_opaque", "name_spans"]

Span = tuple[int, int, str]


class _Node(dict[str, "_Node"]):
    """A node of :func:`_trie`'s tree: the letters that may come next ("" ends a word)."""


def _trie(words: str) -> str:
    """The alternation ``words`` ("st|street|...") as a tree of common beginnings
    ("s(?:t(?:reet)?)?..."): the regex engine tries the few branches that begin with the
    text's next letter instead of every word in turn. Used only where every word is followed
    by what no word goes on with (a word boundary, a dot, a space), so that at most one word
    can match at a place and the order of the branches changes nothing."""
    tree = _Node()
    for word in words.split("|"):
        node = tree
        for ch in word:
            node = node.setdefault(ch, _Node())
        node[""] = _Node()

    def emit(node: _Node) -> str:
        branches = [re.escape(ch) + emit(sub) for ch, sub in node.items() if ch]
        if not branches:
            return ""
        single = len(branches) == 1 and ("" not in node or len(branches[0]) == 1)
        body = branches[0] if single else f"(?:{'|'.join(branches)})"
        return body + "?" if "" in node else body

    return emit(tree)


# a capital: Latin (with Latin Extended-A, whose capitals and small letters alternate),
# Greek or Cyrillic
_UP = "A-ZÀ-ÖØ-ÞĀ-ſΆ-ΏΑ-ΩА-ЯЁ"
# (U+2206, the increment sign, stands in for a Greek capital delta in some place records)
_WORD = rf"[{_UP}](?:[^\W\d_]|['\u2019\u2206-])+(?!\d)"  # not "DE89"
_PARTICLE = (
    r"(?:de|da|do|dos|das|van|von|der|den|del|della|la|le|les|di|du|bin|ibn|al|el|nad|na|"
    r"pod|pri|u|v|ob|am|an|im|sur|sous|en|y|zu|ter|op)"
)
# the same as a tree, where a particle is followed by a space (so at most one can match)
_PARTICLE_TRIE = _trie(_PARTICLE[3:-1])
_CAPS = re.compile(
    rf"{_WORD}(?:[ ](?:[A-Z]\.?(?=[ ])|{_WORD}"
    rf"|{_PARTICLE_TRIE}(?:[ ]{_PARTICLE_TRIE})?(?=[ ][{_UP}])))*"
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
    ("from", "by", "with", "to", "tell", "call", "ask", "contact", "for", "and", "cc", "met",
     "him", "her", "add", "leave", "me", "of", "about", "that")
)  # fmt: skip
# "originally from X", "flew to X", "I'm in X": the two words before a place
_PLACE_PREPOSITIONS = frozenset(("from", "to", "in", "into", "near", "visit", "visiting"))
_PLACE_VERBS = frozenset(
    ("originally", "moved", "here", "flew", "fly", "flying", "travelling", "traveling",
     "travel", "returned", "return", "going", "went", "live", "lives", "living", "lived",
     "born", "based", "located", "i'm", "am", "stay", "staying", "stayed", "arrived",
     "arriving", "relocated", "relocating", "headed", "heading", "came", "come", "comes",
     "drove", "driving", "trip", "moving", "grew", "raised")
)  # fmt: skip
# the last word of a place's name that says it is one ("Castor Bay", "Pine Park", "Cabbage
# Tree Creek", "BLACKBUTT SOUTH"): a capitalised run ending in one is a place
PLACE_ENDINGS = frozenset(
    ("bay", "beach", "brook", "creek", "lake", "lakes", "park", "hill", "hills", "springs",
     "falls", "heights", "valley", "vale", "dale", "glen", "island", "islands", "isle",
     "harbour", "harbor", "haven", "port", "cove", "shores", "plains", "meadows", "mount",
     "mountain", "mountains", "river", "ridge", "point", "junction", "crossing", "landing",
     "village", "town", "township", "city", "ville", "burg", "borough", "county", "parish",
     "south", "north", "east", "west", "upper", "lower", "centre", "center", "downs",
     "flat", "flats", "gully", "forest", "woods", "wells", "sound", "peninsula", "estate")
)  # fmt: skip
# surnames of a shape common in many languages: with a capitalised word before them, a name
# (compared with str.endswith: a search for "(?:...)$" tries the alternation at every
# character of the word, ~8 us a word on this machine)
_SURNAME_ENDINGS = (
    "dóttir", "dottir", "sson", "ović", "ovic", "ević", "evic", "vić", "ski", "ska", "cki",
    "cka", "dzki", "enko", "chuk", "czuk", "shvili", "dze", "yan", "ov", "ova", "ev", "eva",
    "escu", "akis", "opoulos", "oglu", "oğlu",
)  # fmt: skip


def _surname_shape(word: str) -> bool:
    """Whether ``word`` (a possessive too: "Petrović's") ends like a common surname."""
    return word.removesuffix("'s").removesuffix("\u2019s").endswith(_SURNAME_ENDINGS)


_STREET_WORDS = (
    "street|st|avenue|ave|road|rd|lane|ln|drive|dr|boulevard|blvd|court|ct|way|place|pl|"
    "terrace|ter|circle|cir|square|sq|highway|hwy|parkway|pkwy|crescent|close|grove|row|"
    "alley|trail|plaza|path|pike|walk|walks|gardens|mews|hill|park|view|bypass|expressway|"
    "freeway|trafficway|turnpike|junction|crossing|loop|creek|shores|shore|coves|cove|fords|"
    "ford|villages|village|camp|light|lights|heights|ridge|harbor|harbour|meadows|estates|"
    "falls|springs|station|vista|points|point|landing|run|spur|green|orchard|passage|"
    "quay|wharf|embankment|straße|strasse|str|gasse|weg|allee|platz|ring|damm|ufer|straat|"
    "laan|plein|gracht|kade|dreef|singel|vej|gade|gatan|vägen|väg|veien|vei|gata|katu|tie|"
    "kuja|utca|u|út|útja|körút|tér|fasor|köz|sor|ulica|ul|ulice|cesta|trg|iela|tänav|mnt|"
    "calle|etorbidea|kalea|carrer|strada|sokak|caddesi|cad|sk"
)
_STREET_PREFIX = (
    "rue|avenue|boulevard|bd|chemin|place|allée|impasse|quai|route|cours|via|viale|piazza|"
    "piazzale|corso|largo|vicolo|lungomare|calle|c/|avenida|av|avda|plaza|paseo|camino|"
    "carretera|ctra|ronda|carrer|rua|r|travessa|praça|estrada|alameda|rodovia|ulica|ul|aleja|"
    "al|strada|str|bulevardul|calea|aleea|sokak|caddesi|λ|οδός|λεωφόρος|pl|plac|náměstí|nám"
)
_COMPOUND_SUFFIX = (
    "straat|weg|allee|strasse|straße|gasse|vej|gade|gatan|vägen|väg|veien|vei|veg|gata|tie|"
    "katu|kuja|polku|rinne|ranta|laan|plein|platz|damm|ufer|steig|stieg|pfad|stræde|gränd|"
    "torget|torg|plads|utca|dreef|singel|kade|dijk|braut|vegur|stígur|brekka|tänav|iela|"
    "gatvė|ulica|cesta|allé|alléen|veien|gaten|stræde|str\\."
)
_HOUSE = r"\d{1,5}[A-Za-z]?(?:[-/]\d{1,4})?"
_UNIT_WORDS = "apt|apartment|suite|ste|unit|flat|floor|fl|room|rm|bldg|building"
# the three lists as trees, where each word is followed by a word boundary, a dot or a space
_STREET_TRIE, _PREFIX_TRIE, _UNIT_TRIE = map(_trie, (_STREET_WORDS, _STREET_PREFIX, _UNIT_WORDS))
_LOWER = r"[a-zà-ÿ][a-zà-ÿ'-]+"
_SWORD = rf"(?!(?i:{_UNIT_TRIE})\b){_WORD}"  # a word of a street name: not "Apt"
# One pass from digit to digit finds both kinds of address numbers (a house number's digits
# are taken whole, "(?>...)": what follows them must be a space or a comma, which no digit,
# letter or "-" given back could be; so no other split of them is tried):
# - ``first``: a house number that starts the address: "221 Baker Street", "41 Rue de
#   Marrakech", "7007 Štefanikova 1878," (at a line end, a comma, before a unit);
# - ``after``: a number just after a word ("Apt. 5", "Via Roma 5", "Síp utca 17",
#   "Kirchenallee 68"): the words before it say whether it belongs to an address.
_ADDRESS_NUMBER = re.compile(
    rf"\d(?<![\w.,-]\d)(?:(?P<first>(?>\d{{0,4}}[A-Za-z]?(?:[-/]\d{{1,4}})?)(?=[ ,])(?:"
    rf"[ ,]+(?:(?:{_SWORD}|{_PARTICLE_TRIE}|\d{{1,3}}(?:st|nd|rd|th)|[A-Z]\.)[ ]+){{1,4}}"
    rf"(?i:{_STREET_TRIE})\b\.?"
    rf"|,?[ ]+(?i:{_PREFIX_TRIE})\.?(?:[ ]+(?:{_SWORD}|{_PARTICLE}|des|{_LOWER})){{1,5}}"
    rf"|[ ]+{_SWORD}(?:[ ]+(?:{_SWORD}|{_LOWER})){{0,3}}[ ]+{_HOUSE}"
    rf"(?=[ ]*(?:\n|,|$|[.?!](?:\s|$)|(?i:{_UNIT_TRIE})\b))))"
    r"|(?:(?<=[^\W\d_][ ]\d)|(?<=[^\W\d_]\.[ ]\d)|(?<=#\d)|(?<=#[ ]\d))"
    r"(?P<after>\d{0,5}[A-Za-z]?(?:[-/]\d{1,4})?(?!\d)))"
)
# a UUID and an ISO 8601 date-time, whole tokens, found from their first "-" (a pattern that
# began at a hex digit would be tried at most letters of prose): the UUID's first 8 hex
# digits and the year are before the match, in its lookbehind (see :func:`mask_opaque`)
_OPAQUE = re.compile(
    r"-(?:(?<=(?<![\w-])[0-9a-fA-F]{8}-)(?P<uuid>[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
    r"[0-9a-fA-F]{4}-[0-9a-fA-F]{12}(?![\w-]))"
    r"|(?<=(?<![\w.-])\d{4}-)(?P<time>\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d{1,9})?"
    r"(?:Z|[+-]\d\d(?::?\d\d)?)?(?![\w:])))"
)


def mask_opaque(text: str) -> str:
    """``text`` with its UUIDs and ISO 8601 date-times replaced by as many "_" (the same
    offsets): what the passes that try every digit (numbers, address numbers) read, so
    that they pass over the ids and timestamps of log lines, which hold most of their
    digits, in one step each. "_" is neither a digit, nor a letter, nor a separator of a
    number, so no number or address is found in a UUID or a date-time, or runs into one."""
    if "-" not in text:
        return text
    parts: list[str] = []
    pos = 0
    for m in _OPAQUE.finditer(text):
        start = m.start() - (8 if m.lastgroup == "uuid" else 4)
        parts += (text[pos:start], "_" * (m.end() - start))
        pos = m.end()
    if not parts:
        return text
    parts.append(text[pos:])
    return "".join(parts)


_COMPOUND_ENDINGS = tuple(_COMPOUND_SUFFIX.replace("\\.", ".").split("|"))  # lower case
_BOX_WORDS = frozenset(("box", "postbox", "postfach", "apartado"))
# "PSC 1234, Box 5678", "USS Sea Wolf", "FPO AE 09123": one capital first, so that the
# regex engine skips to those capitals in C (a pattern that began with "\b" was tried at
# every position of a text: ~70 us per 4 KB)
_MILITARY = re.compile(
    r"[ADFPU](?<!\w[ADFPU])(?:(?:(?<=P)SC|(?<=U)S(?:NS|NV|S|CGC))[ ][\w ]{1,30}?"
    r"(?:,[ ]Box[ ]\d{1,5})?(?=\n|,|$)|(?<=[ADF])PO[ ](?:AA|AE|AP)[ ]\d{5}\b)"
)
# "the corner of 51 Traill Street and Zeeb Shores": an intersection is an address too
_PIECE = rf"(?:{_WORD}|{_HOUSE}|{_PARTICLE}|[A-Z]\.)"
_CORNER = re.compile(
    rf"\b(?:[Tt]he[ ])?[Cc]orner[ ]of[ ]+{_PIECE}(?:[ ]+{_PIECE}){{0,5}}[ ]+and[ ]+"
    rf"{_PIECE}(?:[ ]+{_WORD}){{0,3}}"
)
# what follows a street in an address: units, city, region, postcode, country, up to the
# end of the sentence (a lower-case word, ". ", "?") or a label ("Mobile:")
_TAIL_TOKEN = (
    rf"(?i:{_UNIT_TRIE})\.?[ ]*#?[ ]*\d{{1,5}}[A-Za-z]?\b|{_WORD}|[{_UP}]{{2,}}\b|"
    rf"{_PARTICLE_TRIE}(?=[ ][{_UP}])|\d{{1,6}}(?:-\d{{3,4}})?\b|[A-Z]\d[A-Z][ ]?\d[A-Z]\d\b|"
    r"[A-Z]{1,2}\d[A-Z\d]?[ ]\d[A-Z]{2}\b|\([A-Z][^\W\d_]+\)"
)
_SEP = r"(?=[ ,\n])[ ]*(?:\n[ ]*){0,2},?[ ]*"
_TAIL_PIECES = 14  # at most this many pieces after a street
_TAIL_PIECE = re.compile(rf"{_SEP}({_TAIL_TOKEN})")
# the street line before a unit ("4687 291 Adelianos Kambos" before "Apt. 343")
_HEAD = re.compile(
    rf"(?<![\w.])\d{{1,6}}[A-Za-z]?(?:[ ,]+(?:{_WORD}|\d{{1,6}}[A-Za-z]?|{_PARTICLE_TRIE}|"
    rf"[A-Z]\.)){{1,6}}[ ,]+$"
)
_STREET_SET = frozenset(_STREET_WORDS.split("|"))
_PREFIX_SET = frozenset(_STREET_PREFIX.split("|"))
_UNIT_SET = frozenset(_UNIT_WORDS.split("|"))
_PARTICLES = frozenset(_PARTICLE[3:-1].split("|")) | {"des"}
_AFTER_WORDS = _UNIT_SET | _BOX_WORDS | _STREET_SET  # a number after one may be an address's
_PO = frozenset(("po", "p.o", "p. o", "p.o."))
_TAIL_STOP = frozenset(
    ("Mobile", "Desk", "Fax", "Phone", "Tel", "Email", "E-mail", "Website", "Address", "Work",
     "Home", "Office", "Personal", "Info", "Cell")
)  # fmt: skip
_TAIL_STOP_UPPER = frozenset(w.upper() for w in _TAIL_STOP)
_NUMBERS_BEFORE = re.compile(r"(?<![\d,] )(?:\d{1,6}[ ]+)+$")
_POSTCODE = re.compile(
    r"[ ,]+(?:\d{5}(?:-\d{4})?|\d{4}(?:-\d{3})?|\d{3}[ ]?\d{2}|\d{2}-\d{3}"
    r"|[A-Z]{1,2}\d[A-Z\d]?[ ]?\d[A-Z]{2}|[A-Z]\d[A-Z][ ]?\d[A-Z]\d)(?![\w-])"
)
_ZIP = re.compile(r"[ ]+\d{5}(?:-\d{4})?\b")
_STATE_ABBR = frozenset(
    ("AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "FL", "GA", "HI", "ID", "IL", "IN", "IA",
     "KS", "KY", "LA", "ME", "MD", "MA", "MI", "MN", "MS", "MO", "MT", "NE", "NV", "NH", "NJ",
     "NM", "NY", "NC", "ND", "OH", "OK", "OR", "PA", "RI", "SC", "SD", "TN", "TX", "UT", "VT",
     "VA", "WA", "WV", "WI", "WY", "DC")
)  # fmt: skip
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


class Gazetteer:
    """The name and place lists, as sets (the data file's lists, nothing added), each also
    holding its names without accents."""

    def __init__(
        self,
        first: set[str],
        last: set[str],
        places: set[str],
        common: frozenset[str] | set[str] = frozenset(),
    ) -> None:
        self.common = frozenset(w.capitalize() for w in common)
        c = self.common  # "Bäck" without its accent is "Back": a common word, not a name
        self.first = frozenset(first | {f for n in first if (f := fold(n)) not in c})
        self.last = frozenset(last | {f for n in last if (f := fold(n)) not in c})
        self.places = frozenset(places | {f for p in places if (f := fold(p)) not in c})
        longest: dict[str, int] = {}
        for place in self.places:
            head = place.split(" ", 1)[0]
            longest[head] = max(longest.get(head, 0), place.count(" ") + 1)
        self.place_heads = longest  # first word -> the most words a place starting with it has
        self.known = frozenset(self.first | self.last | longest.keys())
        self.runs: dict[str, _Run] = {}  # capitalised runs seen, by :func:`_run_info`

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


def _key(word: str) -> str:
    """The list form of a word: no possessive ending, no accents."""
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


_ANY_CUE = _NAME_CUES | _WEAK_CUES | _PLACE_PREPOSITIONS | _TITLES
_NAME_WORDS = frozenset(("name", "names", "surname"))
# cues strong enough that even a common word after them is a name ("My name is John")
_STRONG_CUES = _NAME_WORDS | {"is", "named", "called"}
# a greeting or sign-off that starts a capitalised run ("Hi Landerico", "Dear Mr Okafor")
_LEAD_CUES = frozenset(
    ("hi", "hello", "hey", "dear", "thanks", "cheers", "regards", "sincerely", "signed", "attn")
)  # fmt: skip
_INITIAL = re.compile(r"[A-Z]\.?")


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
    for n in range(min(most, len(keys) - i), 0, -1):
        if " ".join(keys[i : i + n]) in g.places:
            return n
    return 0


def name_spans(text: str, g: Gazetteer | None = None, *, masked: str | None = None) -> list[Span]:
    """Person names, places and street addresses in ``text`` as (start, end, kind);
    ``masked``: :func:`mask_opaque` of ``text`` when the caller has it."""
    g = g or gazetteer()
    spans: list[Span] = []
    if any(c in text for c in "0123456789"):
        spans = _addresses(text, g, mask_opaque(text) if masked is None else masked)
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
        what, words, keys, upper, lead, shift, bare = info
        if what == _SHORT:  # "I", "OK"; a US state's code after ", " or before a ZIP code
            if raw in _STATE_ABBR and _state_at(text, run.start(), run.end()):
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
                if bare:  # "Ruman D. Bataev", "Ana Petrović": a name by its shape
                    spans.append((start, start + bare, "person"))
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
                continue  # "The", "Please"; but "My name is John"
            if (
                (cue in _NAME_CUES or cue in _TITLES)
                and first_key not in _NAME_CUES
                and first_key not in _WEAK_CUES
                and text[start - 1 : start] not in ("=", "/", "_")
            ):  # "my name is Alterio", "Hi Jo,": a name whatever the lists say
                spans.append((start, _cut(run.end(), words), "person"))
            elif bare:
                spans.append((start, start + bare, "person"))
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
        else:
            _read_run(text, start, words, keys, g, spans, upper, cue, before)
    spans += _repeats(text, spans, g, "\n".join(raws))
    # what an earlier pass already redacted is no name: redacting twice must change nothing
    if "[REDACTED:" in text:
        done = [(m.start(), m.end()) for m in _REDACTED.finditer(text)]
        spans = [s for s in spans if not any(s[0] < end and start < s[1] for start, end in done)]
    return spans


# what a capitalised run is, whatever its context (:func:`_run_info`)
_SHORT, _PLACE_ENDING, _NONE_KNOWN, _COMMON, _READ, _NAME = range(6)
_RUNS_REMEMBERED = 8192


_Run = tuple[int, list[str], list[str], bool, str, int, int]
"""What a capitalised run is by its words alone, remembered per run in
:attr:`Gazetteer.runs` (the same runs, "The", "Apt", "Street", come back in every text), so
that only what depends on the words around it is worked out per text: (which rule decides
it, its words, their list forms, whether it is in capitals, its leading greeting, how far
its name starts after the greeting, the length of the name it is by its shape alone)."""


def _run_info(raw: str, g: Gazetteer) -> _Run:
    """What :func:`name_spans` needs of a capitalised run that does not depend on the text
    around it: its words and their list forms, a leading greeting ("Hi Landerico"), and
    which rule decides it (``bare``: the length of the name it is with no cue before it,
    by an initial or a surname's shape, 0 if none)."""
    upper = raw.isupper()
    if " " not in raw:  # one word (most runs): no greeting, no place ending, no shape
        if upper:
            if len(raw) < 3:
                return (_SHORT, [raw], [raw], True, "", 0, 0)
            key = _key(raw.capitalize())
        elif raw.isascii() and "'" not in raw:
            key = raw
        else:
            key = _key(raw)
        if key not in g.known:
            return (_NONE_KNOWN, [raw], [key], upper, "", 0, 0)
        what = _COMMON if key in g.common and key not in g.places else _READ
        return (what, [raw], [key], upper, "", 0, 0)
    words = raw.split(" ")
    if upper and len(raw) < 3:
        return (_SHORT, words, words, True, "", 0, 0)
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
        return (_PLACE_ENDING, words, keys, upper, lead, shift, 0)
    if g.known.isdisjoint(keys):
        bare = 0
        if upper or keys[0] in g.common:
            pass
        elif len(words) > 2 and _INITIAL.fullmatch(words[1]) and _named(words[0], words[2], g):
            bare = sum(len(w) + 1 for w in words[:3]) - 1
        elif len(words) > 1 and len(words[1]) >= 5 and _surname_shape(words[1]):
            bare = len(words[0]) + 1 + len(words[1])
        return (_NONE_KNOWN, words, keys, upper, lead, shift, bare)
    if len(words) == 1 and keys[0] in g.common and keys[0] not in g.places:
        return (_COMMON, words, keys, upper, lead, shift, 0)
    if (
        len(words) == 2
        and not upper
        and keys[0] in g.first
        and keys[0] not in g.place_heads
        and keys[0].lower().rstrip(".") not in _TITLES
        and (keys[1] in g.last or keys[1] not in g.place_heads)
    ):  # "Orla Mitchell": a given name and a surname (or no place) is a name after any
        return (_NAME, words, keys, upper, lead, shift, 0)  # cue (:func:`_read_run`)
    return (_READ, words, keys, upper, lead, shift, 0)


def _keeps_common(cue: str, before: str) -> bool:
    """Whether a common word alone after this cue is a name or a place ("Dr Moss", "my name
    is Will", "flew to MOSS", "I am in Victoria")."""
    return (
        cue in _TITLES
        or cue in _STRONG_CUES
        or (cue in _PLACE_PREPOSITIONS and before in _PLACE_VERBS)
    )


def _named(given: str, surname: str, g: Gazetteer) -> bool:
    """Whether "given X. surname" reads as a name: two capitalised words that are neither
    common words nor upper case ("Ruman D. Bataev", not "Appendix B Table")."""
    return all(
        len(w) >= 3 and not w.isupper() and _key(w) not in g.common for w in (given, surname)
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


def _addresses(text: str, g: Gazetteer, masked: str) -> list[Span]:
    """Every street address in ``text``, each with the rest of its address after it (its
    numbers found in ``masked``, :func:`mask_opaque` of ``text``)."""
    found: list[Span] = []
    for m in _ADDRESS_NUMBER.finditer(masked):
        at = m.start()
        if m.group("first") is not None:
            numbers = _NUMBERS_BEFORE.search(text, max(0, at - 24), at)
            if numbers is not None:  # "09788 43 Rue Hegel": the numbers before it too
                at = numbers.start()
            elif text[at - 1 : at] == " ":  # "Suite 584 Main Street": the unit too
                at = min(at, _street_before(text, at, g) or at)
            found.append((at, _tail(text, m.end(), g), "address"))
            continue
        start = _street_before(text, at, g)
        if start is not None:
            end = m.end() + (text[m.end() : m.end() + 1] == ".")  # "Síp utca 17."
            found.append((start, _tail(text, end, g), "address"))
    at = text.find("orner of")  # every corner's "[Cc]orner of": its match starts at the
    done = 0  # "C" or at "the " before it (a pattern beginning with "\b" was tried at
    while at > 0:  # every position of a text: ~90 us per 4 KB)
        corner = _CORNER.match(text, at - 5) if at >= 5 and at - 5 >= done else None
        if corner is None and at - 1 >= done:
            corner = _CORNER.match(text, at - 1)
        if corner is not None:
            found.append((corner.start(), _tail(text, corner.end(), g), "address"))
            done = corner.end()
        at = text.find("orner of", at + 1)
    if "PO " in text or "PSC" in text or "USS" in text or "USN" in text:
        found += ((m.start(), m.end(), "address") for m in _MILITARY.finditer(text))
    return found


def _street_before(text: str, at: int, g: Gazetteer) -> int | None:
    """Where the address whose number starts at ``at`` starts, judged by the words before
    the number on its line (None: the number is no house number)."""
    line = text.rfind("\n", max(0, at - 70), at) + 1 or max(0, at - 70)
    words = text[line:at].split()
    if not words:
        return None
    last = words[-1]
    prev = last.lstrip("#").rstrip(".,#") or (words[-2] if len(words) > 1 else "")
    low = prev.lower()
    if (
        not prev[:1].isupper()
        and not last[:1].isupper()
        and last not in _PARTICLES
        and low not in _AFTER_WORDS
    ):  # "call 555 0100", "is 42": no street, unit or box word, no capitalised name
        return None
    if low in _UNIT_SET or low in _BOX_WORDS:  # "Apt. 5", "P.O. Box 12", "Suite #210"
        start = text.rfind(prev, line, at)
        if low in _BOX_WORDS and len(words) > 1 and words[-2].lower().rstrip(".") in _PO:
            start = text.rfind(words[-2], line, start)
        head = _HEAD.search(text, line, start)  # "4687 291 Adelianos Kambos" before "Apt. 343"
        return start if head is None else head.start()
    back = 0  # how many words before the number form its street
    if low in _STREET_SET or (prev[:1].isupper() and low.endswith(_COMPOUND_ENDINGS)):
        back = 1
        named = prev[:1].isupper() and low not in _STREET_SET
        for w in reversed(words[-4:-1]):  # "Szilágyi Erzsébet fasor 69", "Tas vezér u. 66"
            if w[:1].isupper() and w not in g.common and w.rstrip(".,").isalpha():
                back, named = back + 1, True
            elif w.isalpha() and w.islower() and back < 3:
                back += 1
            else:
                break
        while back > 1 and not words[-back][:1].isupper():
            back -= 1  # a street name starts with a capital
        if not named:
            return None
    else:
        for n in range(2, min(6, len(words)) + 1):  # "Avenida Noruega 42", "Pl. Kościelny 45"
            w = words[-n]
            if w[:1].isupper() and w.lower().rstrip(".") in _PREFIX_SET:
                inner = words[-n + 1 :]
                if all(x[:1].isupper() or x in _PARTICLES for x in inner):
                    back = n
                break
            if not (w[:1].isupper() or w in _PARTICLES):
                break
    if not back:
        return None
    return text.rfind(words[-back], line, at)


def _tail(text: str, end: int, g: Gazetteer) -> int:
    """Where the address whose street ends at ``end`` ends: over units, city, region,
    postcode and country, not over a common word or a label ("Mobile")."""
    stop = end
    for _ in range(_TAIL_PIECES):  # piece by piece (one match of them all, then each
        piece = _TAIL_PIECE.match(text, stop)  # again, read the tail twice)
        if piece is None:
            break
        token = piece.group(1)
        if (
            token[0].isupper()
            and (token in _TAIL_STOP or token.capitalize() in g.common)
            and token not in g.places
            and (
                token in _TAIL_STOP
                or token.upper() in _TAIL_STOP_UPPER
                # a common word goes on only in capitals ("LOW STREET") or right after a
                # word of the same name ("Castor Bay")
                or not (token.isupper() or (stop > end and piece.group(0) == " " + token))
            )
        ):
            break
        stop = piece.end()
    return stop


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
