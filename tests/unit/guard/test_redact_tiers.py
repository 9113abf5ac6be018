"""The two redaction tiers: what the fast one finds (checksums, vendor tokens, phones, the
name and place gazetteer), the accurate one (spaCy NER), and which sink uses which."""

from __future__ import annotations

import io

import pytest

from stalwart.errors import ConfigError
from stalwart.guard import Redactor, default_redactor, iban_ok, install_redactor, luhn_ok
from stalwart.guard._ner import ner_model
from stalwart.guard._redact import output_redactor
from stalwart.observe import add_log_sink, configure_logging, get_logger, set_redactor

pytestmark = pytest.mark.accurate_redaction  # the accurate tier itself

# Tokens are assembled here, so the repository itself holds no string a secret scanner flags.
B62 = "aB3dE5fG7hJ9kL2mN4pQ6rS8tU1vW3xY5z"
HEX = "0123456789abcdef" * 4
# one given name, after no cue: the fast tier's lists miss it, and its shapes need two
# words ("Chinua Achebe" is a name by its shape: no list, nor the dictionary, knows either)
NAME_ONLY_THE_MODEL_FINDS = "I spoke with Chinua about the invoice."


def kinds(text: str, redactor: Redactor | None = None) -> set[str]:
    return {f.kind for f in (redactor or Redactor()).findings(text)}


# -- checksums ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("digits", "ok"),
    [("4539578763621486", True), ("4539578763621487", False), ("378282246310005", True),
     ("6011111111111117", True), ("6011111111111118", False)],
)  # fmt: skip
def test_luhn(digits: str, ok: bool) -> None:
    assert luhn_ok(digits) is ok


@pytest.mark.parametrize(
    ("iban", "ok"),
    [("DE89 3704 0044 0532 0130 00", True), ("DE89 3704 0044 0532 0130 01", False),
     ("FR14 2004 1010 0505 0001 3M02 606", True), ("NL91ABNA0417164300", True),
     ("NL91ABNA0417164301", False), ("GB82 WEST", False)],
)  # fmt: skip
def test_iban_mod97(iban: str, ok: bool) -> None:
    assert iban_ok(iban) is ok


def test_a_card_or_iban_that_fails_its_checksum_is_kept() -> None:
    assert not kinds("card 4539 5787 6362 1487 on file")
    assert not kinds("IBAN DE89 3704 0044 0532 0130 01")
    assert kinds("card 4539 5787 6362 1486 on file") == {"card"}


# -- vendor token formats -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("token", "kind"),
    [
        ("M" + B62[:25] + ".Gh7kLm." + B62[:30], "discord_token"),
        ("https://discord.com/api/webhooks/123456789012345678/" + B62 * 2, "discord_token"),
        ("xoxb-123456789012-1234567890123-" + B62[:24], "slack_token"),
        ("https://hooks.slack.com/services/T0000000/B0000000/" + B62[:24], "slack_token"),
        ("sk_live_" + B62[:24], "stripe_key"),
        ("whsec_" + B62[:32], "stripe_key"),
        ("AC" + HEX[:32], "twilio_key"),
        ("SG." + B62[:22] + "." + B62[:34] + "abcdefghi", "sendgrid_key"),
        ("npm_" + B62[:34] + "Zz", "npm_token"),
        ("pypi-AgEIcHlwaS5vcmc" + B62 + B62, "pypi_token"),
        ("AKCp" + B62 * 2, "artifactory_token"),
        ("glpat-" + B62[:20], "gitlab_token"),
        ("ghp_" + B62 + "ab", "github_token"),
        ("github_pat_11" + B62, "github_token"),
        ("AKIA" + "IOSFODNN7EXAMPL1", "aws_key"),
        ("AIza" + B62 + "x", "google_key"),
        ("sk-proj-" + B62, "openai_key"),
        ("sk-ant-api03-" + B62 + B62, "anthropic_key"),
        ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0." + B62[:20], "jwt"),
        ("hf_" + "abcdefghijklmnopqrstuvwxyzABCDEFGH", "vendor_token"),
        ("dapi" + HEX[:32], "vendor_token"),
        ("12345678:AA" + B62[:33], "telegram_token"),
        (HEX[:32] + "-us12", "mailchimp_key"),
    ],
)
def test_vendor_tokens_are_found_in_a_plain_log_line(token: str, kind: str) -> None:
    line = f"retrying upload with {token} after 2 failures"
    redacted = Redactor().redact(line)
    assert token not in redacted, redacted
    assert kind in kinds(line)


def test_private_keys_are_removed_whole() -> None:
    pem = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk\n-----END OPENSSH PRIVATE KEY-----"
    assert Redactor().redact(f"key:\n{pem}\nend") == "key:\n[REDACTED:private_key]\nend"


def test_identifiers_that_are_not_secrets_are_kept() -> None:
    for text in (
        "commit 3f2c1a9b8e7d6c5b4a3928171615141312111009 merged",
        "request 6f1c2d3e-4b5a-6978-8a9b-0c1d2e3f4a5b done",
        "see https://example.com/docs/guide?page=2 and /var/lib/app/data.db",
        "version v2.14.3 of the Mozilla/5.0 client",
    ):
        assert Redactor().redact(text) == text, text


# -- phone numbers ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "phone",
    ["+44 20 7946 0958", "+447700900123", "+41 22 345 67 89", "+1-202-555-0143",
     "(202) 555-0143", "202.555.0143", "020 7946 0958", "(07700) 900 123", "06-82237745",
     "001-871-584-1560", "197-546-6176x620", "+33 (0)1 42 68 53 00", "(07700) 073564",
     "036481 87 62", "030/1234567", "415-555-2671 ext. 23", "+81-3-1234-5678"],
)  # fmt: skip
def test_phone_numbers_international_and_national(phone: str) -> None:
    assert Redactor().redact(f"reach me at {phone} please") == "reach me at [REDACTED:phone] please"


@pytest.mark.parametrize(
    "text",
    ["My card is 4111 1111 1111 1111.", "card 4111.1111.1111.1111 on file",
     "(3782-822463-10005)", "card:4111111111111111, thanks"],
)  # fmt: skip
def test_cards_at_a_sentence_end_in_brackets_or_grouped_by_dots(text: str) -> None:
    assert not any(c.isdigit() for c in Redactor().redact(text)), Redactor().redact(text)


def test_a_twelve_digit_card_is_one_only_after_words_about_a_card() -> None:
    body = "50181234567"
    card = next(body + d for d in "0123456789" if luhn_ok(body + d))
    assert kinds(f"my card number {card} is lost") == {"card"}
    assert kinds(f"Maestro {card[:4]} {card[4:8]} {card[8:]} expired") == {"card"}
    assert not kinds(f"order {card} shipped")  # no cue: an order number


def test_short_or_bare_numbers_are_phones_only_after_a_phone_cue() -> None:
    assert kinds("call me on 0612345678 today") == {"phone"}
    assert kinds("You can call 461 4578") == {"phone"}
    assert not kinds("ts 1733395200 order 0612345678 shipped")
    assert not kinds("invoice 461 4578 items")
    assert not kinds("please contact $6260.72 about the refund")
    assert not kinds("released on 2024-03-02, build 12.05.2024")


# -- names, places, addresses (the gazetteer) ----------------------------------------------------
@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("Ticket from Szymon Wojciechowski: the order never arrived.", "person",
         "Szymon Wojciechowski"),
        ("Please call Mrs. Okafor tomorrow.", "person", "Okafor"),
        ("My name is Alterio and I need help.", "person", "Alterio"),
        ("The customer moved to Rotterdam last year.", "location", "Rotterdam"),
        ("She lives in New Zealand now.", "location", "New Zealand"),
        ("Ship it to 221 Baker Street please.", "address", "221 Baker Street"),
        ("Address: Avenida Noruega 42, apt 5", "address", "Avenida Noruega 42"),
        ("Kirchenallee 68 is the depot.", "address", "Kirchenallee 68"),
        ("Send it to P.O. Box 255.", "address", "P.O. Box 255"),
        ("though Pittman's song was about a boat", "person", "Pittman"),
        ("Sherip Arsanukayev wrote", "person", "Sherip Arsanukayev"),
        ("We moved here from ESPOO", "location", "ESPOO"),
        ("I am in Lüchingen for a business trip", "location", "Lüchingen"),
        ("I'm Finn, originally from Borlo, and", "location", "Borlo"),
        ("Mr. Antall flew to Pines Beach on Friday", "location", "Pines Beach"),
        ("We'll meet at 578 Szilágyi Erzsébet fasor 69., Kárász", "address",
         "578 Szilágyi Erzsébet fasor 69., Kárász"),
        ("Our offices are at the corner of 51 Traill Street and Zeeb Shores", "address",
         "corner of 51 Traill Street and Zeeb Shores"),
        ("his address: 5231 52 rue du Faubourg National, TALENCE", "address",
         "5231 52 rue du Faubourg National, TALENCE"),
        ("his address: 7007 Štefanikova 1878, Olešnice na Morave", "address",
         "7007 Štefanikova 1878, Olešnice na Morave"),
        # places in capitals or common words after place words, qualifiers, place endings
        ("We returned to WEXCOMBE by helicopter.", "location", "WEXCOMBE"),
        ("I am in Victoria for a business trip", "location", "Victoria"),
        ("I live in Cyprus (Greek) now.", "location", "Cyprus (Greek)"),
        ("Pakiri Bay is where we met.", "location", "Pakiri Bay"),
        ("We moved here from Dobrovo v Brdih", "location", "Dobrovo v Brdih"),
        ("his address: 12 Crofts Road, CABBAGE TREE CREEK", "address",
         "12 Crofts Road, CABBAGE TREE CREEK"),
        ("Kieran Hale\n12 Forrest Road\n Suite 075\n Castor Bay\n New Zealand", "address",
         "12 Forrest Road\n Suite 075\n Castor Bay"),
    ],
)  # fmt: skip
def test_names_places_and_addresses(text: str, kind: str, value: str) -> None:
    found = Redactor().findings(text)
    at = text.index(value)
    assert any(f.kind == kind and f.start <= at and f.end >= at + len(value) for f in found), [
        (f.kind, text[f.start : f.end]) for f in found
    ]
    assert value not in Redactor().redact(text)


def test_an_address_block_is_removed_line_by_line() -> None:
    block = "Helena Carlsen\n637 Strojirenska 1006\n Suite 026\n Svratka\n Czech Republic 45098"
    out = Redactor().redact(block)
    for part in ("Helena", "Carlsen", "637", "1006", "026", "Svratka", "Czech", "45098"):
        assert part not in out, out


def test_an_address_takes_its_unit_city_region_postcode_and_country() -> None:
    for text, address in (
        ("Address:\n4969 Parmova 70\n Apt. 282\n Loka pri Zidanem Mostu\n Slovenia. Thanks",
         "4969 Parmova 70\n Apt. 282\n Loka pri Zidanem Mostu\n Slovenia"),
        ("lived in 4687 291 Adelianos Kambos Apt. 343\nPigenia\n, NI\n Cyprus 08166. I now",
         "4687 291 Adelianos Kambos Apt. 343\nPigenia\n, NI\n Cyprus 08166"),
        ("send it to 9296 2234 Uitsig St Apt. 229, Fillistorf, Switzerland 22198? I am",
         "9296 2234 Uitsig St Apt. 229, Fillistorf, Switzerland 22198"),
    ):  # fmt: skip
        out = Redactor().redact(text)
        assert out == text.replace(address, "[REDACTED:address]"), out


def test_an_address_stops_at_a_label_or_the_end_of_its_sentence() -> None:
    text = "Office\n221 Baker Street\n London\nMobile: none. The End"
    assert Redactor().redact(text) == "Office\n[REDACTED:address]\nMobile: none. The End"


def test_every_occurrence_of_a_found_name_goes() -> None:
    out = Redactor().redact("Mr. Okafor called. Later Okafor wrote again.")
    assert "Okafor" not in out, out


def test_ordinary_prose_and_code_words_are_kept() -> None:
    for text in (
        "Will you check the status? May we ship the order today?",
        "The Python reference says a Decimal Integer literal has no prefix.",
        "Your order #48213 shipped on 2024-03-02; tracking is updated.",
        "Chapter 5 Section 3 of the Python 3 Way guide; see IBAN rules and NOTE 4.",
        '{"ts": "1970-10-28T16:32:21.179374", "latency_ms": 561.292, "level": "info"}',
    ):
        assert Redactor().redact(text) == text, Redactor().redact(text)


def test_escaped_line_breaks_do_not_hide_a_phone() -> None:
    text = "Personal Info:\\nPhone:\\n616-848-8926\\nE-mail:"
    assert "616-848-8926" not in Redactor().redact(text)


# -- tiers and settings ---------------------------------------------------------------------
def test_tier_is_validated() -> None:
    with pytest.raises(ConfigError, match="tier"):
        Redactor(tier="slow")  # type: ignore[arg-type]


def test_known_values_are_shared_by_every_tier_and_policy() -> None:
    base = Redactor()
    accurate, masked = base.with_tier("accurate"), base.with_policy("mask")
    base.add_known("zq-canary-value-17")  # registered after the clones were made
    for r in (base, accurate, masked):
        assert "zq-canary-value-17" not in r.redact("value zq-canary-value-17 here")


def test_settings_choose_the_tier_of_each_sink(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STALWART_REDACT_OUTPUTS", raising=False)
    monkeypatch.delenv("STALWART_REDACT_LOGS", raising=False)
    assert default_redactor().tier == "fast"
    assert output_redactor().tier == "accurate"
    assert install_redactor().tier == "fast"
    monkeypatch.setenv("STALWART_REDACT_OUTPUTS", "fast")
    monkeypatch.setenv("STALWART_REDACT_LOGS", "accurate")
    try:
        assert output_redactor().tier == "fast"
        assert install_redactor().tier == "accurate"
        monkeypatch.setenv("STALWART_REDACT_OUTPUTS", "fastest")
        with pytest.raises(ConfigError, match="STALWART_REDACT_OUTPUTS"):
            output_redactor()
    finally:
        set_redactor(None)


def test_without_the_model_the_accurate_tier_is_the_fast_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STALWART_NER_MODEL", "none")
    accurate = Redactor(tier="accurate")
    assert accurate.effective_tier == "fast"
    text = "Ticket from Szymon Wojciechowski, +44 20 7946 0958"
    assert accurate.redact(text) == Redactor().redact(text)


def test_a_named_model_that_is_not_installed_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("spacy")
    monkeypatch.setenv("STALWART_NER_MODEL", "xx_no_such_pipeline")
    with pytest.raises(ConfigError, match="STALWART_NER_MODEL"):
        ner_model()


# -- the accurate tier (skipped cleanly when stalwart[ner] is not installed) -------------
needs_model = pytest.mark.skipif(
    ner_model() is None, reason="the accurate tier's model is not installed (stalwart[ner])"
)


@needs_model
def test_the_model_finds_a_name_the_gazetteer_does_not() -> None:
    fast = Redactor().redact(NAME_ONLY_THE_MODEL_FINDS)
    accurate = Redactor(tier="accurate").redact(NAME_ONLY_THE_MODEL_FINDS)
    assert "Chinua" in fast  # the name is in no list the fast tier ships
    assert "Chinua" not in accurate
    assert Redactor(tier="accurate").effective_tier == "accurate"


@needs_model
def test_the_model_does_not_take_code_or_dictionary_words_for_names() -> None:
    text = "Use Counter from collections; the Escape Sequence table and x.__add__(y) differ."
    assert Redactor(tier="accurate").redact(text) == text


@needs_model
def test_the_model_reads_capitals_and_places_it_calls_organisations() -> None:
    accurate = Redactor(tier="accurate")
    # recased for the model ("Tarwonga"), and no place word before it that the fast tier needs
    assert "TARWONGA" not in accurate.redact("Our team in TARWONGA will handle it.")
    # the model calls it an organisation; after "shipped to", with no company word, a place
    text = "The package was shipped to Quelvane last week."
    assert Redactor().redact(text) == text
    assert accurate.redact(text) == "The package was shipped to [REDACTED:location] last week."
    # a company after the same words stays (organisations are opt-in)
    assert accurate.redact("We sold it to Brightwell Ltd last week.") == (
        "We sold it to Brightwell Ltd last week."
    )
    # words in capitals that are English words are not recased into names
    text = "The ERROR and NOTICE levels are logged; see the HTTPS section."
    assert accurate.redact(text) == text


@needs_model
def test_logs_use_the_fast_tier_and_outputs_the_accurate_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("STALWART_REDACT_OUTPUTS", raising=False)
    monkeypatch.delenv("STALWART_REDACT_LOGS", raising=False)
    from stalwart.server._http import redacted

    records: list[dict] = []
    configure_logging(stream=io.StringIO())
    remove = add_log_sink(lambda record, _line: records.append(record))
    install_redactor()
    try:
        get_logger("test.tiers").info("ticket_note", note=NAME_ONLY_THE_MODEL_FINDS)
    finally:
        remove()
        set_redactor(None)
        configure_logging()
    logged = next(r["note"] for r in records if r.get("event") == "ticket_note")
    assert logged == Redactor().redact(NAME_ONLY_THE_MODEL_FINDS)  # fast: the lists miss Chinua
    shown = redacted({"answer": NAME_ONLY_THE_MODEL_FINDS})["answer"]  # the API's views
    assert shown == Redactor(tier="accurate").redact(NAME_ONLY_THE_MODEL_FINDS)
    assert "Chinua" not in shown


def test_a_redaction_marker_is_no_name_to_redact_again() -> None:
    """Found by the idempotence property: after a title, "REDACTED" read as a surname."""
    from stalwart.guard import Redactor

    for text in ("MR0[REDACTED:person]", "Mr [REDACTED:person] called", "Dr. [REDACTED:email]"):
        assert Redactor().redact(text) == text


@needs_model
def test_the_model_reads_a_text_once_and_answers_again_from_its_cache(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A repeated text (a canned answer, a hand-over's result) costs no second inference,
    and gets the same spans as the first reading; a text past the size limit is not kept."""
    from stalwart.guard import _ner

    model = ner_model()
    assert model is not None
    reads: list[str] = []
    read = model._read
    batched = model._read_batched

    def counting(text: str, organizations: bool) -> list[tuple[int, int, str]]:
        reads.append(text)
        return batched(text, organizations)

    monkeypatch.setattr(model, "_read_batched", counting)
    text = NAME_ONLY_THE_MODEL_FINDS + " (cache test)"
    first = model.spans(text)
    assert first and all(kind == "person" for _, _, kind in first)
    first.clear()  # a caller changing its list must not change the cached answer
    second = model.spans(text)
    assert second == read(text, False)
    assert reads == [text]
    assert model.spans(text, organizations=True) == read(text, True)  # another key
    assert reads == [text, text]
    model.forget()  # what bench/redaction.py does to time first readings
    assert model.spans(text) == second
    assert reads == [text, text, text]
    reads.clear()
    model.spans(text)
    model.spans(text, organizations=True)
    assert reads == [text]  # remembered again after the new reading
    reads[:] = [text, text]
    monkeypatch.setattr(_ner, "CACHE_MAX_CHARS", 10)
    model.spans(text)
    model.spans(text)
    assert reads == [text, text, text, text]


@needs_model
def test_texts_asked_for_while_the_model_is_busy_are_read_as_one_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Threads that ask while another thread has the model wait, then one batch reads all
    their texts; each gets the spans it gets when read alone."""
    import threading
    import time

    model = ner_model()
    assert model is not None
    texts = [f"{NAME_ONLY_THE_MODEL_FINDS} (batch {n})" for n in range(3)] + [
        "Nothing here but an order number 1234 (batch)."
    ]
    alone = [model._read(t, False) for t in texts]
    batches: list[int] = []
    pipe = model._nlp.pipe

    def counting_pipe(docs: list[str]) -> object:
        batches.append(len(docs))
        return pipe(docs)

    monkeypatch.setattr(model._nlp, "pipe", counting_pipe)
    results: dict[int, list[tuple[int, int, str]]] = {}
    with model._lock:  # the model is busy with another text
        threads = [
            threading.Thread(target=lambda n=n: results.update({n: model.spans(texts[n])}))
            for n in range(len(texts))
        ]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30
        while len(model._pending) < len(texts):  # every thread is waiting for the model
            assert time.monotonic() < deadline, "the threads never queued their texts"
            time.sleep(0.001)
    for thread in threads:
        thread.join(30)
    assert batches == [len(texts)]
    assert [results[n] for n in range(len(texts))] == alone


@needs_model
def test_vetted_text_gets_the_fast_tier_only() -> None:
    """A sub-task's output was redacted by its agent's output tier: the caller's output
    redaction skips the model for it, and still runs the fast tier (patterns, checksums)."""
    accurate = Redactor(tier="accurate")
    card = "4539 5787 6362 1486"
    vetted_text = NAME_ONLY_THE_MODEL_FINDS + f" Card {card}."
    fresh_text = NAME_ONLY_THE_MODEL_FINDS + " Again."
    out = accurate.redact_data({"a": vetted_text, "b": [fresh_text]}, vetted={vetted_text})
    assert "Chinua" in out["a"]  # the model did not run on it again
    assert card not in out["a"] and "[REDACTED:card]" in out["a"]  # the fast tier did
    assert "Chinua" not in out["b"][0]  # text not vetted gets the model as before
