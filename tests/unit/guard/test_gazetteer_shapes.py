"""Names and places the fast tier reads from their shape, where no list knows them and no
cue comes before them (``stalwart.guard._shapes.shaped_name``, ``shaped_place``;
docs/redaction.md, *What each tier finds*), and the English words, companies and product
names that must not be taken for names or places."""

from __future__ import annotations

import gzip
import hashlib
import re
from importlib import resources

import pytest

from stalwart.guard import Redactor
from stalwart.guard._gazetteer import gazetteer
from stalwart.guard._shapes import ENGLISH_FILE, english, english_word


def persons(text: str) -> list[str]:
    return [text[f.start : f.end] for f in Redactor().findings(text) if f.kind == "person"]


@pytest.mark.parametrize(
    ("text", "name"),
    [
        # a given name that is a common English word (not in the lists) before a surname
        ('Producer John Blakey explained to Fuse TV: "We all liked it"', "John Blakey"),
        ("as regular commenter Max Schmitz points out", "Max Schmitz"),
        # ... with an initial; the listed surname found alone grows to the whole name
        ("sung by Max N. Schmitz in 1974", "Max N. Schmitz"),
        ("A tribute to Tom I. Holzman, sadly", "Tom I. Holzman"),
        # a listed surname that is also a town's name is the name's, after a given name
        ("What's your name? Mark Wilson", "Mark Wilson"),
        # an initial that some list knows as a word does not hide the shape
        ("Benedykta G. Kucharska lives here", "Benedykta G. Kucharska"),
        # two words no list or dictionary knows, with particles between them
        ("we need to add Meltem Vledder as guardian", "Meltem Vledder"),
        ("Haroun van der Kruk\n\nPress relations specialist", "Haroun van der Kruk"),
        # a word no list knows before a listed surname
        ("Kauan Cunha listed his top 20 songs", "Kauan Cunha"),
        # a name's own inner capital is no product's
        ("What's the word from Don McBryde today", "Don McBryde"),
        # a place's name as a given name, before a surname of a common shape
        ("A tribute to Sawa Bazhenov, sadly", "Sawa Bazhenov"),
        # a common given name the lists hold as a place, before a listed surname
        ("I read about Victoria Mitchell today.", "Victoria Mitchell"),
    ],
)
def test_a_name_is_read_from_its_shape(text: str, name: str) -> None:
    assert persons(text) == [name]


@pytest.mark.parametrize(
    "text",
    [
        "See the String Formatting section and Relative Imports.",  # English words
        "Byte Arrays and Variable Annotations are described below.",  # inflected
        "We sold it to Brightwell Ltd last week.",  # a company
        "Acme Zentrix Group sent the invoice.",
        "The Will Return value is None.",  # a common given name before a common word
        "Grant Access to the admin, then Mark Complete.",  # ... or an English word
        "See Appendix B Table 3.",  # an initial between words that are no names
        "I spoke with Chinua about the invoice.",  # one unknown word: the model's
        "The NOTICE FILE lists them.",  # capitals
        # product names written with a capital inside (found in stalwart's own docs)
        "OpenTelemetry GenAI semantics, JFrog Artifactory tokens and LangGraph's PostgreSQL.",
        "Samsung CredSweeper's rule file.",
    ],
)
def test_what_is_no_name_by_its_shape(text: str) -> None:
    assert persons(text) == []


def test_the_dictionary_takes_inflections_and_not_names() -> None:
    words = english()
    assert len(words) > 70_000 and "formatting" in words and "vledder" not in words
    for word in ("Arrays", "Studies", "Formatted", "Imports", "Settings", "Annotations"):
        assert english_word(word), word
    for word in ("Vledder", "Timayev", "Kanou", "Becker"):  # no "-er" stripped: "Beck"
        assert not english_word(word), word


def test_the_dictionary_file_is_the_one_its_notice_describes() -> None:
    data = resources.files("stalwart.guard").joinpath("data")
    raw = gzip.decompress(data.joinpath(ENGLISH_FILE).read_bytes())
    notice = data.joinpath("NOTICE.md").read_text(encoding="utf-8")
    section = notice.split(f"# {ENGLISH_FILE}", 1)[1].split("\n# ", 1)[0]
    recorded = re.search(r"SHA-256 at this commit is\s+`([0-9a-f]{64})`", section)
    assert recorded is not None
    assert hashlib.sha256(raw).hexdigest() == recorded.group(1)
    assert "WordNet Release 3.0" in notice  # its licence travels with it


def test_the_shapes_do_not_change_what_the_lists_decide() -> None:
    # a listed given name and surname is a name as before; a listed place stays a place
    g = gazetteer()
    assert "Orla" in g.first
    assert persons("I met Orla Mitchell yesterday.") == ["Orla Mitchell"]
    found = Redactor().findings("She flew to New Zealand last May.")
    assert [(f.kind, "She flew to New Zealand last May."[f.start : f.end]) for f in found] == [
        ("location", "New Zealand")
    ]


def locations(text: str) -> list[str]:
    return [text[f.start : f.end] for f in Redactor().findings(text) if f.kind == "location"]


@pytest.mark.parametrize(
    ("text", "place"),
    [
        ("She moved to Kevinmouth last year.", "Kevinmouth"),
        ("Pottersville is small", "Pottersville"),  # no cue: the ending says it
        ("Our office in Brookton closed", "Brookton"),
        ("The parcel went to Daylesford", "Daylesford"),
        ("They live in East Christopher now", "East Christopher"),  # a compass point first
        ("Meet me at Lake Jennifer", "Lake Jennifer"),
        ("Shipping to Port Kevinmouth", "Port Kevinmouth"),
        ("Williamsport is nice", "Williamsport"),  # "-port" after a listed surname
        ("They moved to Jenniferside", "Jenniferside"),  # "-side" after a given name
        ("New Amanda is near", "New Amanda"),  # "New" before a given name
    ],
)
def test_a_place_is_read_from_its_shape(text: str, place: str) -> None:
    assert place in locations(text)


@pytest.mark.parametrize(
    "text",
    [
        "Backport the fix",  # "-port" is no place ending here ("Backport", "Viewport")
        "Add a Subfield and a Memoryview",  # "-field", "-view" neither, after no name
        "Clientside code",
        "The Singleton pattern",  # an English word
        "New Keywords added",  # "New" starts too much else: only a given name follows it
        "New Mark",  # a common word, though a given name
        "BROOKTON",  # a word in capitals is a log's constant as often
    ],
)
def test_what_is_no_place_by_its_shape(text: str) -> None:
    assert locations(text) == []


def test_a_listed_place_keeps_its_postcode() -> None:
    """A compass point before a given name is a place by its shape, unless the lists hold
    the two: then the lists read it, with the postcode after it ("Africa" is a given name)."""
    text = "Kaapstad\n South Africa 31552"
    found = [text[f.start : f.end] for f in Redactor().findings(text)]
    assert any(value.endswith("31552") for value in found), found
