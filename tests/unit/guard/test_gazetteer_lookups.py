"""The gazetteer's remembered lookups (``stalwart.guard._gazetteer``) answer exactly what
the plain computations answer: a place's head tries only the lengths its places have
(:attr:`Gazetteer.place_lengths`), and a word's list form is remembered (:func:`_key`).
Both were made for speed (issue 16); the fast tier's findings must not change."""

from __future__ import annotations

import random

from stalwart.guard import _gazetteer
from stalwart.guard._gazetteer import Gazetteer, _key, _place_at, fold, gazetteer


def _place_at_every_length(g: Gazetteer, keys: list[str], i: int) -> int:
    """:func:`_place_at` as it was: every length from the most a head has down to one."""
    most = g.place_heads.get(keys[i], 0)
    for n in range(min(most, len(keys) - i), 0, -1):
        if " ".join(keys[i : i + n]) in g.places:
            return n
    return 0


def test_a_place_is_found_at_the_same_length_as_by_trying_every_length() -> None:
    g = gazetteer()
    rng = random.Random(16)
    long_places = sorted(p for p in g.places if " " in p)
    heads = sorted(g.place_lengths)
    cases = 0
    for place in rng.sample(long_places, 3000):
        words = place.split(" ")
        # the place whole, cut short, with words after it, and after a word of no place
        for keys in (words, words[:-1], [*words, "Road", "Smith"], ["Orla", *words]):
            for i in range(len(keys)):
                assert _place_at(g, keys, i) == _place_at_every_length(g, keys, i), keys
                cases += 1
    for head in rng.sample(heads, 2000):  # a head before words that make no place with it
        keys = [head, "Zzyzx", "Qwerty"]
        assert _place_at(g, keys, 0) == _place_at_every_length(g, keys, 0)
    assert cases > 20_000
    # the heads with a gap in their lengths are the ones the shortcut skips lengths for
    assert any(len(n) < max(n) for n in g.place_lengths.values())


def test_a_remembered_list_form_is_the_computed_one() -> None:
    words = ["Ždárec", "Garðabær", "Pittman's", "Petrović\u2019s", "O'Brien", "Orla", "ÆBLE"]
    for word in words * 2:  # computed, then remembered
        plain = word.removesuffix("\u2019s").removesuffix("'s")
        assert _key(word) == fold(plain)
    assert _key("Ždárec") == "Zdarec" and _key("Pittman's") == "Pittman"


def test_the_remembered_list_forms_are_bounded() -> None:
    _key.cache_clear()
    for n in range(_gazetteer._RUNS_REMEMBERED + 10):
        _key(f"Wörd{n}")
    assert _key.cache_info().currsize <= _gazetteer._RUNS_REMEMBERED
    assert _key("Wörd3") == "Word3"
