"""Street addresses for the fast redaction tier, without a model (see
:mod:`stalwart.guard._gazetteer` for what is found and why each pattern starts as it does).

A house number with words ending in a street word ("12 Baker Street"), a street word then a
number ("Avenida Noruega 42", "Síp utca 17", "Kirchenallee 68"), a number, a street name and
a number ("7007 Štefanikova 1878"), unit lines ("Apt. 5"), P.O. boxes, military addresses
and street corners; each is extended over what follows it in an address (unit, city,
region, postcode, country, on the same line or the next ones). Also :func:`mask_opaque`,
which hides the UUIDs and date-times of log lines from every pass that tries each digit.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from stalwart.guard._identifiers import zip_after_state
from stalwart.guard._words import _PARTICLE, _PARTICLE_TRIE, _PARTICLES, _UP, _WORD, Span, trie

if TYPE_CHECKING:
    from stalwart.guard._gazetteer import Gazetteer

__all__ = ["address_spans", "mask_opaque"]

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
_STREET_TRIE, _PREFIX_TRIE, _UNIT_TRIE = map(trie, (_STREET_WORDS, _STREET_PREFIX, _UNIT_WORDS))
_LOWER = r"[a-zà-ÿ][a-zà-ÿ'-]+"
# a word of a street name: not "Apt" (its capital checked first, so that the unit words are
# looked for only before a capital, not before every lower-case word after a number)
_SWORD = rf"(?=[{_UP}])(?!(?i:{_UNIT_TRIE})\b){_WORD}"
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
    r"|(?:(?<=[^\W\d_][ ]\d)|(?<=[^\W\d_]\.[ ]\d)|(?<=#\d)|(?<=#[ ]\d)|(?<=[^\W\d_]\n\d))"
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
_AFTER_WORDS = _UNIT_SET | _BOX_WORDS | _STREET_SET  # a number after one may be an address's
_PO = frozenset(("po", "p.o", "p. o", "p.o."))
_TAIL_STOP = frozenset(
    ("Mobile", "Desk", "Fax", "Phone", "Tel", "Email", "E-mail", "Website", "Address", "Work",
     "Home", "Office", "Personal", "Info", "Cell")
)  # fmt: skip
_TAIL_STOP_UPPER = frozenset(w.upper() for w in _TAIL_STOP)
_NUMBERS_BEFORE = re.compile(r"(?<![\d,] )(?:\d{1,6}[ ]+)+$")


def address_spans(text: str, g: Gazetteer, masked: str) -> list[Span]:
    """Every street address in ``text``, each with the rest of its address after it (its
    numbers found in ``masked``, :func:`mask_opaque` of ``text``), and every US ZIP code
    after its state (``postal_code``)."""
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
        elif zip_after_state(text, at, m.end()):  # "Springfield, IL 62704"
            found.append((at, m.end(), "postal_code"))
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
    before = text[line:at]
    near = before.rsplit(None, 2)  # the last two words (most numbers are judged by them)
    if not near:
        return None
    last = near[-1]
    prev = last.lstrip("#").rstrip(".,#") or (near[-2] if len(near) > 1 else "")
    low = prev.lower()
    if (
        not prev[:1].isupper()
        and not last[:1].isupper()
        and last not in _PARTICLES
        and low not in _AFTER_WORDS
    ):  # "call 555 0100", "is 42": no street, unit or box word, no capitalised name
        return None
    words = before.split()
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
