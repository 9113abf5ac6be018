"""Record encoding, checksums, JSON validation and the recovery plan."""

from __future__ import annotations

import enum
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stalwart.durable import _integrity
from stalwart.durable._integrity import (
    FORMAT_VERSION,
    RawRow,
    check_json,
    decode_record,
    encode_record,
    journal_body,
    plan_recovery,
)
from stalwart.errors import CorruptRecord, InvalidMessage

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=20,
)  # fmt: skip


@given(json_values)
def test_roundtrip_is_exact(value: Any) -> None:
    check_json(value, "value")
    record = encode_record("task", 3, value)
    assert decode_record("task", 3, record) == value
    assert record[2] == FORMAT_VERSION


@given(json_values, st.data())
def test_every_flip_and_truncation_is_detected(value: Any, data: st.DataObject) -> None:
    record = encode_record("task", 3, value)
    pos = data.draw(st.integers(0, len(record) - 1))
    bit = data.draw(st.integers(0, 7))
    flipped = record[:pos] + bytes([record[pos] ^ (1 << bit)]) + record[pos + 1 :]
    with pytest.raises(CorruptRecord):
        decode_record("task", 3, flipped)
    cut = data.draw(st.integers(0, len(record) - 1))
    with pytest.raises(CorruptRecord):
        decode_record("task", 3, record[:cut])


def test_record_bound_to_its_owner_and_position() -> None:
    record = encode_record("task-a", 1, {"x": 1})
    with pytest.raises(CorruptRecord, match="checksum"):
        decode_record("task-b", 1, record)
    with pytest.raises(CorruptRecord, match="checksum"):
        decode_record("task-a", 2, record)
    with pytest.raises(CorruptRecord, match="missing"):
        decode_record("task-a", 1, None)
    flipped = record[:2] + bytes([FORMAT_VERSION + 1]) + record[3:]
    with pytest.raises(CorruptRecord, match="checksum"):  # a flipped version byte is damage
        decode_record("task-a", 1, flipped)


def test_an_intact_record_of_a_newer_format_is_left_alone_not_quarantined() -> None:
    from stalwart.durable import _integrity as integrity
    from stalwart.errors import IncompatibleFormat

    body = b'{"x":1}'
    newer = FORMAT_VERSION + 1
    crc = integrity._crc("task-a", 1, newer, body)
    record = integrity._HEADER.pack(integrity._MAGIC, newer, crc, len(body)) + body
    with pytest.raises(IncompatibleFormat, match="a newer node wrote it") as info:
        decode_record("task-a", 1, record)
    assert not isinstance(info.value, CorruptRecord)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ((1, 2), r"tuple at \$"),
        ({"a": [1, {2}]}, r"set at \$\.a\[1\]"),
        ({"t": float("inf")}, "non-finite"),
        ({3: "x"}, "non-string dict key 3"),
        (b"bytes", "bytes"),
    ],
)
def test_check_json_names_what_is_wrong(value: Any, message: str) -> None:
    with pytest.raises(InvalidMessage, match=message):
        check_json(value, "step 'x' result")


def test_check_json_depth_limit() -> None:
    deep: Any = []
    for _ in range(100):
        deep = [deep]
    with pytest.raises(InvalidMessage, match="deeper"):
        check_json(deep, "v")


def _rows(task: str, kinds: list[str]) -> list[RawRow]:
    return [
        RawRow(i, k, k, encode_record(task, i, journal_body(k, k, i))) for i, k in enumerate(kinds)
    ]


def test_plan_keeps_a_clean_journal() -> None:
    plan = plan_recovery("t", _rows("t", ["step"] * 5))
    assert [d.seq for d in plan.keep] == [0, 1, 2, 3, 4] and plan.quarantine == []


def test_plan_cuts_at_first_damage_after_last_checkpoint() -> None:
    rows = _rows("t", ["step", "step", "checkpoint", "step", "step", "step"])
    rows[1] = RawRow(1, "step", "step", b"junk")  # before the checkpoint: alone
    rows[4] = RawRow(4, "step", "step", rows[4].record[:-1])  # after: cut from here
    plan = plan_recovery("t", rows)
    assert [d.seq for d in plan.keep] == [0, 2, 3]
    assert [seq for seq, _ in plan.quarantine] == [1, 4, 5]
    assert "follows damaged record #4" in dict(plan.quarantine)[5]


def test_plan_treats_a_gap_as_damage_and_checks_columns() -> None:
    rows = _rows("t", ["step"] * 5)
    del rows[2]
    rows[0] = RawRow(0, "now", "step", rows[0].record)  # column disagrees with the body
    plan = plan_recovery("t", rows)
    assert plan.keep == []
    assert [seq for seq, _ in plan.quarantine] == [0, 1, 3, 4]


def test_random_damage_never_yields_a_wrong_entry() -> None:
    rng = random.Random(7)
    for _ in range(300):
        rows = _rows("t", ["step"] * 8)
        i = rng.randrange(8)
        raw = bytearray(rows[i].record or b"")
        raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
        rows[i] = RawRow(i, "step", "step", bytes(raw))
        plan = plan_recovery("t", rows)
        assert all(d.value == d.seq for d in plan.keep)
        assert [d.seq for d in plan.keep] == list(range(i))


class _Kind(enum.StrEnum):
    A = "a"


class _Level(enum.IntEnum):
    HIGH = 3


class _Text(str):
    pass


class _Number(float):
    pass


class _Map(dict[Any, Any]):
    pass


class _Items(list[Any]):
    pass


_LEAVES = st.one_of(
    st.none(), st.booleans(), st.integers(), st.text(max_size=3), st.floats(),
    st.sampled_from([(1,), {2}, b"x", 1j, _Kind.A, _Level.HIGH, _Text("t"), _Number(1.5)]),
    st.sampled_from([_Map(a=1), _Map({_Text("k"): [1]}), _Map({1: 2}), _Items([1, {2}])]),
)  # fmt: skip
_VALUES = st.recursive(
    _LEAVES,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.one_of(st.text(max_size=2), st.integers(0, 2)), inner, max_size=3),
    ),
    max_leaves=12,
)


def _old_check(value: Any) -> bool:
    try:
        _integrity._check(value, "v", "$", 0)
    except InvalidMessage:
        return False
    return True


@settings(max_examples=300, deadline=None)
@given(_VALUES)
def test_the_quick_walk_accepts_what_the_named_walk_accepts(value: Any) -> None:
    # check_json walks a value once without building paths; the walk that names the
    # place of a bad value runs only for one, and both decide alike
    assert _integrity._plain(value) == _old_check(value)


@pytest.mark.parametrize("levels", [63, 64, 65, 66])
def test_the_quick_walk_keeps_the_depth_limit(levels: int) -> None:
    for leaf in (1, [], {}):
        deep: Any = leaf
        for _ in range(levels):
            deep = [deep]
        assert _integrity._plain(deep) == _old_check(deep)
