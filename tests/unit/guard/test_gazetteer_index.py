"""The gazetteer's shipped index is what deriving it from the shipped lists makes, and a
missing, stale or unreadable index is derived again at load, with the same lists."""

from __future__ import annotations

import gzip
import json
import shutil
from importlib import resources

import pytest

from stalwart.guard._gazetteer import (
    INDEX_FILE,
    LISTS_FILE,
    Gazetteer,
    GazetteerIndex,
    fold,
    lists_sha256,
)

DATA = resources.files("stalwart.guard").joinpath("data")


def _lists() -> tuple[bytes, dict[str, list[str]]]:
    raw = DATA.joinpath(LISTS_FILE).read_bytes()
    return raw, json.loads(gzip.decompress(raw))


def _derived(data: dict[str, list[str]]) -> GazetteerIndex:
    common = frozenset(w.capitalize() for w in data["common"])
    return GazetteerIndex.derive(set(data["first"]), set(data["last"]), set(data["place"]), common)


def test_the_shipped_index_is_derived_from_the_shipped_lists():
    """Fails when the lists change and the index was not written again (``python
    bench/build_gazetteer.py --index``)."""
    raw, data = _lists()
    shipped = json.loads(gzip.decompress(DATA.joinpath(INDEX_FILE).read_bytes()))
    assert shipped["source_sha256"] == lists_sha256(raw)
    assert GazetteerIndex.from_json(shipped) == _derived(data)
    assert Gazetteer.load().index == _derived(data)


def test_the_index_holds_what_the_lists_hold_without_accents_and_every_place_length():
    _, data = _lists()
    index = _derived(data)
    common = {w.capitalize() for w in data["common"]}
    places = set(data["place"]) | index.place_folded
    assert {fold(p) for p in data["place"]} - common <= places
    lengths: dict[str, set[int]] = {}  # the plain way: every place, by its first word
    for place in places:
        lengths.setdefault(place.split(" ")[0], set()).add(place.count(" ") + 1)
    expected = {h: tuple(sorted(n, reverse=True)) for h, n in lengths.items() if n != {1}}
    assert index.place_lengths == expected
    g = Gazetteer(set(data["first"]), set(data["last"]), set(data["place"]), set(data["common"]))
    assert g.place_heads == {h: max(n) for h, n in lengths.items()}
    assert g.known == g.first | g.last | g.place_heads.keys()


@pytest.mark.parametrize("index_file", ["missing", "stale", "unreadable", "truncated", "not_one"])
def test_an_index_not_made_from_the_lists_is_derived_again(tmp_path, index_file):
    raw, data = _lists()
    shutil.copyfile(str(DATA.joinpath(LISTS_FILE)), tmp_path / LISTS_FILE)
    wrong = GazetteerIndex(frozenset(), frozenset(), frozenset(), {})
    if index_file == "stale":  # made from other lists: their hash, not these
        text = json.dumps(wrong.as_json(lists_sha256(b"other lists")))
        (tmp_path / INDEX_FILE).write_bytes(gzip.compress(text.encode()))
    elif index_file == "unreadable":
        (tmp_path / INDEX_FILE).write_bytes(b"\x1f\x8b not gzip")
    elif index_file == "truncated":
        whole = gzip.compress(json.dumps(wrong.as_json(lists_sha256(raw))).encode())
        (tmp_path / INDEX_FILE).write_bytes(whole[: len(whole) // 2])
    elif index_file == "not_one":  # the right hash, but no index
        text = json.dumps({"source_sha256": lists_sha256(raw), "place_lengths": [1]})
        (tmp_path / INDEX_FILE).write_bytes(gzip.compress(text.encode()))
    g = Gazetteer.load(tmp_path)
    assert g.index == _derived(data) != wrong
    assert g.place_heads == Gazetteer.load().place_heads
