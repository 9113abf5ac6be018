import msgspec
import pytest

from stalwart.errors import InvalidMessage, ProtocolError
from stalwart.runtime._messages import (
    HEADER,
    Call,
    Reply,
    check_json,
    decode_frame,
    encode_frame,
)


def test_frames_round_trip_with_a_length_prefix():
    msg = Call(ref=7, payload={"a": [1, 2.5, None, True, "x"]}, timeout=1.5, sender="s")
    frame = encode_frame(msg)
    (length,) = HEADER.unpack(frame[:4])
    assert length == len(frame) - 4
    assert decode_frame(frame[4:]) == msg


def test_unknown_message_type_is_a_protocol_error():
    body = msgspec.msgpack.encode(["no-such-type", 1])
    with pytest.raises(ProtocolError, match="unknown or malformed message type"):
        decode_frame(body)


def test_undecodable_bytes_are_a_protocol_error():
    with pytest.raises(ProtocolError, match="undecodable frame"):
        decode_frame(b"\xc1\xc1")


def test_wrong_field_types_are_a_protocol_error():
    body = msgspec.msgpack.encode(["reply", "not-an-int", True])
    with pytest.raises(ProtocolError):
        decode_frame(body)
    assert decode_frame(msgspec.msgpack.encode(["reply", 1, True])) == Reply(ref=1, ok=True)


@pytest.mark.parametrize(
    "value", [None, True, 0, -1, 2**62, 1.5, "", "ü", [], {}, {"a": [{"b": None}]}]
)
def test_json_values_pass(value):
    check_json(value)


@pytest.mark.parametrize(
    ("value", "where"),
    [
        ((1, 2), "payload is a tuple"),
        ({"a": {"b": object()}}, r"payload\['a'\]\['b'\] is a object"),
        ([1, float("inf")], r"payload\[1\] is inf"),
        ({("k",): 1}, "has a key"),
    ],
)
def test_non_json_values_name_the_offending_place(value, where):
    with pytest.raises(InvalidMessage, match=where):
        check_json(value)


def test_a_remote_stalwart_error_keeps_its_class() -> None:
    from stalwart.errors import RemoteError
    from stalwart.resilience import classify

    full = RemoteError("'resolver' raised StoreUnavailable: full", remote_type="StoreUnavailable")
    assert (full.retryable, full.scope) == ("retryable", "systemic")
    assert classify(full).retryable is True
    odd = RemoteError("'resolver' raised ValueError: no", remote_type="ValueError")
    assert odd.retryable == "permanent" and classify(odd).retryable is False
    unknown = RemoteError("x", remote_type="__class__")  # a name, not a lookup into the module
    assert unknown.retryable == "permanent"
