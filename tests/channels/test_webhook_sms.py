"""Webhook and SMS channels against a real local HTTP server; deliveries verified with the
``standardwebhooks`` package; the SMS segment counter and E.164 rules."""

from __future__ import annotations

import random
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks import Webhook

from micromarketing.channels import OutgoingMessage, RetryPolicy, message_key, send_with_retries
from micromarketing.channels.sms import (
    GSM7_BASIC,
    GSM7_EXTENSION,
    SmsChannel,
    count_segments,
    is_gsm7,
    sms_cost,
    to_e164,
)
from micromarketing.channels.webhook import WebhookChannel, generate_secret, sign


class Receiver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.statuses: list[int] = []  # answered in order; 200 once exhausted

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["content-length"]))
        srv: Receiver = self.server  # type: ignore[assignment]
        srv.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
        status = srv.statuses.pop(0) if srv.statuses else 200
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def receiver():
    srv = Receiver()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(5)


def _msg(customer_id: str, channel: str = "webhook", to: str = "sub-1", sms: str | None = None):
    return OutgoingMessage(
        message_id=message_key("spring", customer_id, channel),
        customer_id=customer_id,
        channel=channel,
        to=to,
        subject="Hi",
        text="Hello",
        sms=sms,
        campaign_id="spring",
        variant="A",
    )


def test_deliveries_verify_with_standardwebhooks(receiver):
    secret = generate_secret()
    with WebhookChannel(receiver.url, secret) as ch:
        outcomes = ch.send_batch([_msg("c1"), _msg("c2")])
    assert [o.status for o in outcomes] == ["sent", "sent"]
    for (headers, body), cid in zip(receiver.requests, ["c1", "c2"], strict=True):
        payload = Webhook(secret).verify(body, headers)
        assert payload["data"]["customer_id"] == cid
        assert headers["webhook-id"] == message_key("spring", cid, "webhook")
    # a wrong secret does not verify
    from standardwebhooks.webhooks import WebhookVerificationError

    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(receiver.requests[0][1], receiver.requests[0][0])


def test_signature_format():
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    sig = sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}')
    assert sig == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="  # the Standard Webhooks example


def test_500_then_200_retries_with_the_same_id(receiver):
    receiver.statuses = [500, 503, 200, 404]
    secret = generate_secret()
    with WebhookChannel(receiver.url, secret) as ch:
        outcomes, attempts = send_with_retries(
            ch, [_msg("c1")], RetryPolicy(base_delay_seconds=0.01), rng=random.Random(0), sleep=lambda s: None
        )
        assert outcomes[0].status == "sent" and attempts == [3]
        assert {h["webhook-id"] for h, _ in receiver.requests} == {message_key("spring", "c1", "webhook")}
        gone = ch.send_batch([_msg("c9")])[0]
        assert gone.status == "permanent_failure" and gone.code == 404 and not gone.suppress


def test_unreachable_endpoint_is_temporary():
    with WebhookChannel("http://127.0.0.1:9/hook", generate_secret(), timeout_seconds=2) as ch:
        assert ch.send_batch([_msg("c1")])[0].status == "temporary_failure"


def test_sms_channel_counts_segments_and_rejects_bad_numbers(receiver):
    secret = generate_secret()
    text = "Spring picks: 20% off with code SPRING. STOP: http://127.0.0.1:8000/u/abc"
    msgs = [
        _msg("c1", "sms", "+14155550100", text),
        _msg("c2", "sms", "4155550100", text),
        _msg("c3", "sms", "+447700900123", "Привет! " * 10),
        _msg("c4", "sms", "+14155550101", ""),
    ]
    with SmsChannel(WebhookChannel(receiver.url, secret), sender_id="SHOP") as ch:
        outcomes = ch.send_batch(msgs)
    assert [o.status for o in outcomes] == ["sent", "permanent_failure", "sent", "permanent_failure"]
    assert outcomes[0].units == 1 and outcomes[2].units == 2
    bodies = [Webhook(secret).verify(b, h)["data"] for h, b in receiver.requests]
    assert bodies[0]["encoding"] == "GSM-7" and bodies[1]["encoding"] == "UCS-2"
    assert bodies[0]["to"] == "+14155550100"


def test_segment_limits():
    assert count_segments("a" * 160).segments == 1
    assert count_segments("a" * 161).segments == 2
    assert count_segments("a" * 306).segments == 2
    assert count_segments("a" * 307).segments == 3
    assert count_segments("€" * 80).segments == 1  # 160 septets
    assert count_segments("€" * 81).segments == 2
    assert count_segments("a" * 152 + "€" + "a").segments == 1  # 155 septets fit one
    assert count_segments("a" * 160 + "€").units == 162
    assert count_segments("ж" * 70).segments == 1 and count_segments("ж" * 71).segments == 2
    assert count_segments("ж" * 134).segments == 2 and count_segments("ж" * 135).segments == 3
    assert count_segments("😀" * 35).segments == 1 and count_segments("😀" * 36).segments == 2
    assert count_segments("").segments == 0
    assert sms_cost("a" * 161, 0.05) == pytest.approx(0.10)


def test_e164():
    assert to_e164("+1 (415) 555-0100") == "+14155550100"
    assert to_e164("0044 7700 900123") == "+447700900123"
    assert to_e164("07700 900123", default_country_code="44") == "+447700900123"
    assert to_e164("4155550100") is None
    assert to_e164("+0123") is None and to_e164("+1234567890123456") is None and to_e164("abc") is None


@given(st.text(max_size=400))
def test_segment_counter_properties(text):
    seg = count_segments(text)
    assert (seg.segments >= 1) == (len(text) > 0)
    assert (seg.encoding == "UCS-2") == any(c not in GSM7_BASIC and c not in GSM7_EXTENSION for c in text)
    assert seg.encoding == ("GSM-7" if is_gsm7(text) else "UCS-2")
    per = 160 if seg.encoding == "GSM-7" else 70
    if seg.units <= per:
        assert seg.segments == min(1, seg.units)
    else:
        assert seg.segments >= -(-seg.units // (per - 7))


@given(st.text(alphabet=st.sampled_from(sorted(GSM7_BASIC | GSM7_EXTENSION)), max_size=400))
def test_gsm_text_never_ucs2(text):
    assert count_segments(text).encoding == "GSM-7"


@given(st.text(max_size=30), st.one_of(st.none(), st.sampled_from(["1", "44", "358"])))
def test_e164_never_raises_and_is_valid(raw, cc):
    out = to_e164(raw, cc)
    assert out is None or (out.startswith("+") and out[1:].isdigit() and 2 <= len(out) - 1 <= 15)
