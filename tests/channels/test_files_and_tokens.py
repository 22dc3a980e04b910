"""Direct mail and ad-audience files, unsubscribe tokens, the retry policy."""

from __future__ import annotations

import csv
import random
from datetime import UTC, datetime, timedelta

import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from micromarketing.channels import Channel, DeliveryOutcome, OutgoingMessage, RetryPolicy, message_key
from micromarketing.channels.audiences import (
    AudienceContact,
    normalize_email,
    normalize_name,
    normalize_phone,
    sha256_hex,
    write_audience,
)
from micromarketing.channels.direct_mail import DirectMailChannel, DirectMailRecipient, write_direct_mail
from micromarketing.channels.email import EmailChannel
from micromarketing.config import EmailSettings
from micromarketing.tokens import (
    load_or_create_secret,
    unsubscribe_token,
    unsubscribe_url,
    verify_token,
)

META_EMAIL = "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"
META_PHONE = "e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176"


# -- audiences -----------------------------------------------------------------------------------
def test_meta_published_examples():
    assert sha256_hex(normalize_email("  John_Smith@gmail.com ", "meta")) == META_EMAIL
    assert normalize_phone("(650)555-1212", "meta", "1") == "16505551212"
    assert sha256_hex(normalize_phone("(650)555-1212", "meta", "1")) == META_PHONE


def test_google_rules_differ_from_meta():
    assert normalize_email("John.Smith@GoogleMail.com", "google") == "johnsmith@googlemail.com"
    assert normalize_email("John.Smith@example.com", "google") == "john.smith@example.com"
    assert normalize_email("John.Smith@gmail.com", "meta") == "john.smith@gmail.com"
    assert normalize_phone("(650)555-1212", "google", "1") == "+16505551212"
    assert sha256_hex(normalize_phone("+1 650 555 1212", "google")) != META_PHONE
    assert normalize_name("  O'Brien-Smith, Jr. ") == "obriensmith jr"
    assert normalize_name("Zoë") == "zoë"


def _contacts():
    return [
        AudienceContact(
            customer_id="c1",
            ad_consent=True,
            email="John_Smith@gmail.com",
            phone="(650)555-1212",
            first_name="John",
            last_name="Smith",
            country="US",
            postal_code="94016-1234",
        ),
        AudienceContact(customer_id="c2", ad_consent=False, email="nope@example.com"),
        AudienceContact(customer_id="c3", ad_consent=True, first_name="Ann"),  # nothing matchable
        AudienceContact(customer_id="c4", ad_consent=True, email="a.b@gmail.com"),
    ]


@pytest.mark.parametrize("platform", ["google", "meta"])
def test_audience_files_hold_no_raw_pii_and_only_consenting(tmp_path, platform):
    out = write_audience(_contacts(), platform, tmp_path / f"{platform}.csv", default_country_code="1")
    assert (
        out.customer_ids == ["c1", "c4"] and out.excluded_no_consent == 1 and out.skipped_no_identifier == 1
    )
    content = (tmp_path / f"{platform}.csv").read_text()
    for raw in ("john", "smith", "gmail", "6505551212", "(650)", "nope"):
        assert raw not in content.lower()
    rows = list(csv.DictReader(content.splitlines()))
    if platform == "meta":
        assert list(rows[0]) == ["email", "phone", "fn", "ln", "zip", "country"]
        assert rows[0]["email"] == META_EMAIL and rows[0]["phone"] == META_PHONE
        assert rows[0]["country"] == sha256_hex("us") and rows[0]["zip"] == sha256_hex("94016")
    else:
        assert list(rows[0]) == ["Email", "Phone", "First Name", "Last Name", "Country", "Zip"]
        assert rows[0]["Phone"] == sha256_hex("+16505551212")
        assert rows[0]["Email"] == sha256_hex("john_smith@gmail.com")
        assert rows[1]["Email"] == sha256_hex("ab@gmail.com")
        assert rows[0]["Country"] == "US" and rows[0]["Zip"] == "94016-1234"
        assert rows[0]["First Name"] == sha256_hex("john")


@given(st.text(max_size=60), st.sampled_from(["google", "meta"]))
def test_normalisers_never_raise_and_are_idempotent(raw, platform):
    e = normalize_email(raw, platform)
    assert e is None or (e == e.strip().lower() and normalize_email(e, platform) == e)
    n = normalize_name(raw)
    assert n is None or (n == n.lower() and normalize_name(n) == n)
    p = normalize_phone(raw, platform, "44")
    assert p is None or p.lstrip("+").isdigit()
    assert p is None or (p.startswith("+") == (platform == "google"))


# -- direct mail ---------------------------------------------------------------------------------
def test_direct_mail_csv_and_parquet(tmp_path):
    recips = [
        DirectMailRecipient(
            customer_id="c2",
            first_name="Zoë",
            last_name="Pérez",
            address_line1="1 Rue X",
            city="Paris",
            postal_code="75001",
            country="FR",
            campaign_id="spring",
            variant="B",
            offer_code="SPRING20",
        ),
        DirectMailRecipient(
            customer_id="c1",
            first_name="Ann",
            last_name="Lee",
            address_line1="2 Main St",
            city="Boston",
            region="MA",
            postal_code="02110",
            country="US",
            campaign_id="spring",
            variant="A",
            offer_code="SPRING10",
        ),
        DirectMailRecipient(customer_id="c3", last_name="Nobody"),
    ]
    out = write_direct_mail(recips, tmp_path / "mail.csv", tmp_path / "mail.parquet")
    assert out.rows == 2 and set(out.skipped) == {"c3"}
    rows = list(csv.DictReader((tmp_path / "mail.csv").open(encoding="utf-8")))
    assert [r["customer_id"] for r in rows] == ["c2", "c1"]  # presorted by country, postal code
    assert (
        rows[0]["last_name"] == "Pérez" and rows[0]["offer_code"] == "SPRING20" and rows[1]["variant"] == "A"
    )
    table = pq.read_table(tmp_path / "mail.parquet")
    assert table.to_pylist() == rows


def test_direct_mail_channel_protocol(tmp_path):
    ch = DirectMailChannel(tmp_path / "m.csv", tmp_path / "m.parquet")
    assert isinstance(ch, Channel) and isinstance(EmailChannel(EmailSettings()), Channel)
    addr = {
        "first_name": "Ann",
        "last_name": "Lee",
        "address_line1": "2 Main St",
        "city": "Boston",
        "postal_code": "02110",
        "country": "US",
    }
    msgs = [
        OutgoingMessage(
            message_id="m1",
            customer_id="c1",
            channel="direct_mail",
            to="c1",
            metadata=addr,
            variant="A",
            offer_code="X1",
        ),
        OutgoingMessage(message_id="m2", customer_id="c2", channel="direct_mail", to="c2"),
    ]
    outcomes = ch.send_batch(msgs)
    ch.close()
    assert [o.status for o in outcomes] == ["sent", "permanent_failure"]
    assert ch.export is not None and ch.export.rows == 1


# -- tokens --------------------------------------------------------------------------------------
def test_tokens_roundtrip_and_reject_forgery(tmp_path):
    secret = load_or_create_secret(tmp_path / "secrets" / "unsubscribe.key")
    assert load_or_create_secret(tmp_path / "secrets" / "unsubscribe.key") == secret
    assert (tmp_path / "secrets" / "unsubscribe.key").stat().st_mode & 0o777 == 0o600
    token = unsubscribe_token(secret, "cust-42")
    assert token == unsubscribe_token(secret, "cust-42") and "cust-42" not in token
    import base64

    assert b"cust-42" not in base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))  # opaque
    assert verify_token(secret, token) == "cust-42"
    assert verify_token(b"other", token) is None
    flipped = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    assert verify_token(secret, flipped) is None
    assert verify_token(secret, "") is None and verify_token(secret, "!!!") is None
    url = unsubscribe_url("https://shop.example/", secret, "cust-42")
    assert url == f"https://shop.example/u/{token}"


@given(st.text(min_size=1, max_size=100).filter(lambda s: len(s.encode()) <= 512), st.text(max_size=40))
def test_tokens_are_url_safe_and_only_verify_their_own_id(customer_id, junk):
    secret = b"k" * 32
    token = unsubscribe_token(secret, customer_id)
    assert all(c.isalnum() or c in "-_" for c in token)
    assert verify_token(secret, token) == customer_id
    other = verify_token(secret, junk)
    assert other is None or unsubscribe_token(secret, other) == junk


# -- models and retry policy ---------------------------------------------------------------------
def test_message_is_frozen_and_key_is_stable():
    m = OutgoingMessage(message_id=message_key("c", "u", "email"), customer_id="u", channel="email", to="a@b")
    with pytest.raises(ValidationError):
        m.to = "x@y"  # type: ignore[misc]
    assert message_key("c", "u", "email") == m.message_id != message_key("c", "u", "sms")
    assert OutgoingMessage.model_validate_json(m.model_dump_json()) == m  # the outbox can store it
    assert DeliveryOutcome.permanent("m", "x", code=550, suppress=True).suppress


def test_retry_policy_backoff_with_full_jitter_is_deterministic():
    policy = RetryPolicy(max_attempts=4, base_delay_seconds=10, max_delay_seconds=25)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    a = [policy.next_attempt_at(k, now, random.Random(7)) for k in (1, 2, 3)]
    b = [policy.next_attempt_at(k, now, random.Random(7)) for k in (1, 2, 3)]
    assert a == b
    rng = random.Random(3)
    for attempt, cap in ((1, 10), (2, 20), (3, 25)):
        for _ in range(200):
            at = policy.next_attempt_at(attempt, now, rng)
            assert at is not None and now <= at <= now + timedelta(seconds=cap)
    assert policy.next_attempt_at(4, now, rng) is None
