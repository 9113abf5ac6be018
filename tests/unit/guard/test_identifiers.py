"""Identity document numbers and postal codes: found where the words before them name
them, and nowhere else (``stalwart.guard._identifiers``)."""

from __future__ import annotations

import pytest

from stalwart.guard import Redactor
from stalwart.guard._identifiers import zip_after_state


def _found(text: str, redactor: Redactor | None = None) -> list[tuple[str, str]]:
    return [(f.kind, text[f.start : f.end]) for f in (redactor or Redactor()).findings(text)]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("My driver's license number is X1234567.", "X1234567"),
        ("Driver's licence: 123456789", "123456789"),
        ("driving licence no. AB12345 expired", "AB12345"),
        ("driver license # S123-456-78-901", "S123-456-78-901"),
        ("DL: 123-456-789 issued in 2019", "123-456-789"),  # an id, not a phone
        ("Passport No.: 533380006", "533380006"),
        ("Passport number: 533 380 006, issued 2019", "533 380 006"),
        ("her national ID card is K1A2B3C", "K1A2B3C"),
        ("ID number 4807989Z on file", "4807989Z"),
        ("license number is k1a2b.", "k1a2b"),  # small letters, as a lower-cased text has
        ("LICENSE NUMBER: 720HA5656", "720HA5656"),
    ],
)
def test_a_document_number_after_the_documents_name(text: str, value: str) -> None:
    assert ("id_number", value) in _found(text)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("Springfield, IL 62704", "62704"),
        ("Send it to 12 Main St, Springfield, IL 62704-1234", None),  # inside the address
        ("Austin, Texas 78701-1234 USA", "78701-1234"),
        ("she lives in New York 10001 now", "10001"),
        ("new amandaside, ky 77676", "77676"),  # small letters after a comma
        ("East Christopher, MH 79323", "79323"),  # the Marshall Islands' USPS code
        ("zip code is 10001", "10001"),
        ("ZIP: 90210", "90210"),
        ("postal code SW1A 1AA", "SW1A 1AA"),
        ("postcode: K1A 0B1", "K1A 0B1"),
        ("The postal code is 1234 AB in Amsterdam", "1234 AB"),
        ("Mail: Springfield, IL\n62704", "62704"),  # the address's lines broke there
        ("Illinois\n62704", "62704"),
        ("Dayton, OH 45402, United States 45402", "45402"),  # the country's name
        ("Springfield, United States of America 62704", "62704"),
        ("USA 62704", "62704"),
        ("my zipcode's 62704", "62704"),  # a possessive between the name and the value
        ("I live in the 78701 zip code", "78701"),  # the name after the value
        ("78701-1234 ZIP code.", "78701-1234"),
        ("Postal: 78701", "78701"),
    ],
)
def test_a_postal_code_after_its_state_or_its_name(text: str, value: str | None) -> None:
    found = _found(text)
    if value is None:  # the address takes the ZIP code with it
        assert [kind for kind, _ in found] == ["address"]
        assert found[0][1].endswith("62704-1234")
    else:
        assert ("postal_code", value) in found


@pytest.mark.parametrize(
    "text",
    [
        "in 10000 cases the request failed",  # "in" is no Indiana in small letters
        "the zip file is 12345 bytes",  # "zip" names a file here
        "gzip 12345 blocks",
        "My passport photo was taken 12345 days ago",  # "photo": the number is not it
        "Bring your passport. 12345 people came",  # the sentence ended
        "DL 2 files",  # too short
        "dl 12345678 bytes",  # "dl" in small letters is a download as often
        "ID: 48213",  # a bare "ID" names a record in a log line, not a document
        "driver's license expired on 2023-01-02",  # a date
        "Licensed under the Apache License 2.0",
        "POST /v1/tasks 200 12345 bytes",
        "zip code of the city",
        "for s1, s2 in zip(state1, state2):",  # Python's zip() in a traceback's line
        "fetched https://example.com/plugin.zip', 'sha256': '12345'",  # a file, not a cue
        "from https://www.cms.gov/files/zip/puf2019",  # a path
        "Ohio\n\n12345 rows were read",  # a blank line: no longer the address's
        "Results\n12345 rows were read",
        "in the states 12345 people",  # "states" alone is no country
        "USA 2024",
        "processed 12345 zip files",  # a word after the name: it named something else
        "order 123456 zip code",  # six digits
        "id-12345 zip code",
        "postal service 12345",
    ],
)
def test_no_finding_where_the_words_name_no_such_value(text: str) -> None:
    assert [kind for kind, _ in _found(text) if kind in ("id_number", "postal_code")] == []


def test_offsets_hold_when_lowering_changes_a_texts_length() -> None:
    text = "İstanbul office; passport no. 533380006"  # "İ".lower() is two characters
    assert _found(text)[-1] == ("id_number", "533380006")


def test_zip_after_state_asks_five_digits_and_a_state() -> None:
    text = "Boston, MA 02115 and Boston, Ma 02115 and Boston MA 021150"
    assert zip_after_state(text, 11, 16)
    assert zip_after_state(text, 32, 37)  # "Ma" after a comma
    assert not zip_after_state(text, 51, 57)  # six digits
    assert not zip_after_state("Room 12 02115", 8, 13)


def test_the_kinds_are_asked_for_like_every_other() -> None:
    text = "Springfield, IL 62704; DL X1234567"
    only_postal = Redactor(kinds=["postal_code"])
    assert _found(text, only_postal) == [("postal_code", "62704")]
    without = Redactor(kinds=[k for k in Redactor().kinds if k not in ("id_number", "postal_code")])
    assert [k for k, _ in _found(text, without)] == ["location", "location"]
    assert Redactor().redact("DL X1234567") == "DL [REDACTED:id_number]"


@pytest.mark.parametrize(
    ("key", "value", "kept"),
    [
        ("drivers_license", "X1234567", False),
        ("DriversLicenseNumber", "S123-456-78-901", False),
        ("passportNumber", "533380006", False),
        ("national_id", "K1A2B3C", False),
        ("zip", 62704, False),  # an integer too
        ("zipCode", "62704-1234", False),
        ("postal_code", "SW1A 1AA", False),
        ("license", "GPL-3.0", True),  # a bare "license" names a software licence
        ("zip_code", "n/a", True),  # not a postal code's shape
        ("passport", "expired", True),
        ("dl", "12345678", True),  # a bare "dl" is a download as often
        ("zipfile", "12345", True),
        ("order_id", "12345678", True),
        ("id_no", "12345", True),  # a record's number as often as an identity card's
        ("id_number", "4807989Z", True),
    ],
)
def test_a_fields_name_is_the_cue_its_value_has_no_words_for(
    key: str, value: object, kept: bool
) -> None:
    redactor = Redactor()
    data = redactor.redact_data({"customer": {key: value}})["customer"][key]
    line = redactor.redact_record({"event": "x", key: value})[key]
    if kept:
        assert data == value and line == value
    else:
        assert data == line and data.startswith("[REDACTED:"), (data, line)


def test_a_keyed_value_follows_the_policy_and_the_kinds() -> None:
    assert Redactor(policy="mask").redact_data({"passport_no": "533380006"}) == {
        "passport_no": "[id_number:****0006]"
    }
    without = Redactor(kinds=[k for k in Redactor().kinds if k != "postal_code"])
    assert without.redact_data({"zip": 62704}) == {"zip": 62704}
