"""The SMTP channel against a real aiosmtpd server on 127.0.0.1."""

from __future__ import annotations

import base64
import email
import random
import shutil
import socket
import subprocess

import dkim
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope

from micromarketing.channels import OutgoingMessage, RetryPolicy, message_key, send_with_retries
from micromarketing.channels.email import DkimSigner, EmailChannel, build_email
from micromarketing.config import EmailSettings
from micromarketing.tokens import unsubscribe_url, verify_token

SECRET = b"test-secret"


class Handler:
    """Accepts mail; 550 for addresses starting with "bounce", 451 the first ``defer_times`` times
    for addresses starting with "defer"."""

    def __init__(self, defer_times: int = 1) -> None:
        self.received: list[Envelope] = []
        self.defer_times = defer_times
        self.deferred: dict[str, int] = {}

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("bounce"):
            return "550 5.1.1 No such user"
        if address.startswith("defer"):
            n = self.deferred.get(address, 0)
            if n < self.defer_times:
                self.deferred[address] = n + 1
                return "451 4.7.1 Greylisted, try later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.received.append(envelope)
        return "250 OK"


class PipeliningHandler(Handler):
    """The same, advertising PIPELINING (RFC 2920) as Postfix does: the channel pipelines."""

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", responses[-1]]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(params=[Handler, PipeliningHandler], ids=["serial", "pipelining"])
def smtp_server(request):
    handler = request.param()
    controller = Controller(handler, hostname="127.0.0.1", port=_free_port())
    controller.start()
    try:
        yield handler, controller.port
    finally:
        controller.stop()


def _msg(to: str, customer_id: str) -> OutgoingMessage:
    return OutgoingMessage(
        message_id=message_key("spring", customer_id, "email"),
        customer_id=customer_id,
        channel="email",
        to=to,
        subject="Spring picks for you",
        text="Hello, here are your picks.",
        html="<html><body><p>Hello, here are your <b>picks</b>.</p></body></html>",
        unsubscribe_url=unsubscribe_url("https://shop.example", SECRET, customer_id),
        campaign_id="spring",
    )


def test_batch_classifies_5xx_and_4xx_and_sends_the_rest(smtp_server):
    handler, port = smtp_server
    msgs = [
        _msg("a@example.com", "c1"),
        _msg("bounce@example.com", "c2"),
        _msg("defer@example.com", "c3"),
        _msg("b@example.com", "c4"),
    ]
    with EmailChannel(EmailSettings(port=port, sender="news@shop.example")) as ch:
        outcomes = ch.send_batch(msgs)
        assert [o.status for o in outcomes] == ["sent", "permanent_failure", "temporary_failure", "sent"]
        assert [o.message_id for o in outcomes] == [m.message_id for m in msgs]
        assert outcomes[1].code == 550 and outcomes[1].suppress and "No such user" in outcomes[1].reason
        assert outcomes[2].code == 451 and not outcomes[2].suppress
        retry = ch.send_batch([msgs[2]])
        assert retry[0].status == "sent"
        assert ch.connections_opened == 1  # the connection was reused across batches
    assert len(handler.received) == 3
    ids = {email.message_from_bytes(e.original_content)["Message-ID"] for e in handler.received}
    assert f"<{msgs[2].message_id}@shop.example>" in ids


def test_each_outcome_is_reported_before_the_next_message_reaches_the_server(smtp_server):
    handler, port = smtp_server
    msgs = [
        _msg(f"{kind}{i}@example.com", f"c{i}") for i, kind in enumerate(["a", "bounce", "b", "defer", "c"])
    ]
    msgs.insert(2, _msg("a@example.com", "c9").model_copy(update={"unsubscribe_url": None}))  # unbuildable
    seen: list[tuple[str, int]] = []

    def done(msg, outcome):
        assert outcome.message_id == msg.message_id
        seen.append((outcome.status, len(handler.received)))

    with EmailChannel(EmailSettings(port=port)) as ch:
        outcomes = ch.send_batch(iter(msgs), done=done)
    assert [o.message_id for o in outcomes] == [m.message_id for m in msgs]
    # the server had received exactly the messages reported sent so far: never one more
    assert seen == [
        ("sent", 1),
        ("permanent_failure", 1),
        ("permanent_failure", 1),
        ("sent", 2),
        ("temporary_failure", 2),
        ("sent", 3),
    ]


def test_headers_parts_and_stable_message_id_across_retry(smtp_server):
    handler, port = smtp_server
    msg = _msg("defer-x@example.com", "cust-42")
    with EmailChannel(EmailSettings(port=port, sender="news@shop.example")) as ch:
        outcomes, attempts = send_with_retries(
            ch, [msg], RetryPolicy(base_delay_seconds=0.01), rng=random.Random(1), sleep=lambda s: None
        )
    assert outcomes[0].status == "sent" and attempts == [2]
    parsed = email.message_from_bytes(handler.received[0].original_content)
    assert parsed["Message-ID"] == f"<{message_key('spring', 'cust-42', 'email')}@shop.example>"
    # the same message built again (a retry after a crash) carries the same Message-ID
    again = email.message_from_bytes(build_email(msg, sender="news@shop.example", domain="shop.example"))
    assert again["Message-ID"] == parsed["Message-ID"]
    lu = parsed["List-Unsubscribe"]
    assert f"<{msg.unsubscribe_url}>" in lu and "<mailto:unsubscribe@shop.example?" in lu
    assert lu.index("https://") < lu.index("mailto:")
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    token = msg.unsubscribe_url.rsplit("/", 1)[1]
    assert verify_token(SECRET, token) == "cust-42"
    parts = {
        p.get_content_type(): p.get_payload(decode=True).decode()
        for p in parsed.walk()
        if not p.is_multipart()
    }
    assert set(parts) == {"text/plain", "text/html"}
    assert msg.unsubscribe_url in parts["text/plain"]
    assert f'href="{msg.unsubscribe_url}"' in parts["text/html"]


def test_missing_unsubscribe_link_is_permanent_without_suppression(smtp_server):
    handler, port = smtp_server
    bad = _msg("a@example.com", "c1").model_copy(update={"unsubscribe_url": None})
    ok = _msg("b@example.com", "c2")
    with EmailChannel(EmailSettings(port=port)) as ch:
        outcomes = ch.send_batch([bad, ok])
    assert outcomes[0].status == "permanent_failure" and not outcomes[0].suppress
    assert outcomes[1].status == "sent"


def test_server_down_marks_whole_batch_temporary():
    msgs = [_msg("a@example.com", "c1"), _msg("b@example.com", "c2")]
    ch = EmailChannel(EmailSettings(port=_free_port(), timeout_seconds=2))
    outcomes = ch.send_batch(msgs)
    ch.close()
    assert [o.status for o in outcomes] == ["temporary_failure"] * 2


def test_dkim_signature_covers_unsubscribe_headers_and_verifies(smtp_server, tmp_path):
    handler, port = smtp_server
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI needed to generate the test key")
    key_path = tmp_path / "dkim.pem"
    subprocess.run(
        ["openssl", "genrsa", "-traditional", "-out", str(key_path), "2048"], check=True, capture_output=True
    )
    pub = subprocess.run(
        ["openssl", "rsa", "-in", str(key_path), "-pubout", "-outform", "DER"],
        check=True,
        capture_output=True,
    ).stdout
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(pub)
    settings = EmailSettings(
        port=port, sender="news@shop.example", dkim_key_path=str(key_path), dkim_selector="mm1"
    )
    assert settings.dkim_enabled and DkimSigner.from_settings(settings) is not None
    with EmailChannel(settings) as ch:
        assert ch.send_batch([_msg("a@example.com", "c1")])[0].status == "sent"
    data = handler.received[0].original_content

    def dnsfunc(name, timeout=5):
        assert name == b"mm1._domainkey.shop.example."
        return record

    assert dkim.verify(data, dnsfunc=dnsfunc)
    sig = email.message_from_bytes(data)["DKIM-Signature"].replace("\r\n", "").replace(" ", "")
    signed = sig.split("h=")[1].split(";")[0].lower().split(":")
    assert "list-unsubscribe" in signed and "list-unsubscribe-post" in signed
    # tampering with the one-click header breaks the signature
    tampered = data.replace(b"List-Unsubscribe=One-Click", b"List-Unsubscribe=Two-Click")
    assert not dkim.verify(tampered, dnsfunc=dnsfunc)


def test_non_ascii_subject_text_only_and_header_injection():
    from email import policy

    base = _msg("a@example.com", "c1")
    uni = base.model_copy(update={"subject": "Ваши подборки — spring édition " * 4, "html": None})
    parsed = email.message_from_bytes(
        build_email(uni, sender="n@shop.example", domain="shop.example"), policy=policy.default
    )
    assert parsed["Subject"] == uni.subject
    assert parsed.get_content_type() == "text/plain" and uni.unsubscribe_url in parsed.get_content()
    for bad in (
        {"subject": "hi\r\nBcc: x@evil.example"},
        {"to": "a@x.com\r\nBcc: y@evil"},
        {"headers": {"X-Campaign": "a\nb"}},
        {"headers": {"List-Unsubscribe": "<https://elsewhere>"}},
        {"message_id": 'x" y'},
    ):
        with pytest.raises(ValueError):
            build_email(base.model_copy(update=bad), sender="n@shop.example", domain="shop.example")
    custom = base.model_copy(update={"headers": {"X-Campaign": "spring"}})
    assert (
        email.message_from_bytes(build_email(custom, sender="n@s.example", domain="s.example"))["X-Campaign"]
        == "spring"
    )


def test_starttls_and_login(tmp_path, monkeypatch):
    import ssl

    from aiosmtpd.smtp import AuthResult, LoginPassword

    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI needed to generate the test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    logins = []

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and auth_data.password == b"s3cret"
        logins.append((mechanism, ok))
        return AuthResult(success=ok)

    handler = Handler()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=_free_port(),
        tls_context=server_ctx,
        require_starttls=True,
        authenticator=authenticator,
        auth_require_tls=True,
    )
    controller.start()
    try:
        monkeypatch.setenv("MM_TEST_SMTP_PASSWORD", "s3cret")
        settings = EmailSettings(
            port=controller.port, starttls=True, username="mailer", password_env="MM_TEST_SMTP_PASSWORD"
        )
        client_ctx = ssl.create_default_context(cafile=str(cert))
        with EmailChannel(settings, ssl_context=client_ctx) as ch:
            assert ch.send_batch([_msg("a@example.com", "c1")])[0].status == "sent"
        assert logins and all(ok for _, ok in logins) and len(handler.received) == 1
        # a wrong password is a connection-level failure: every message stays temporary
        monkeypatch.setenv("MM_TEST_SMTP_PASSWORD", "wrong")
        # (smtplib falls back from PLAIN to LOGIN after a 535, and aiosmtpd 1.4 never answers that
        # second attempt: a short timeout keeps the test fast)
        settings = settings.model_copy(update={"timeout_seconds": 1.0})
        with EmailChannel(settings, ssl_context=client_ctx) as ch:
            outcomes = ch.send_batch([_msg("a@example.com", "c1"), _msg("b@example.com", "c2")])
        assert [o.status for o in outcomes] == ["temporary_failure"] * 2
    finally:
        controller.stop()


class ClosingHandler(Handler):
    """Answers 421 (service closing) to the DATA of addresses starting with "crash"."""

    async def handle_DATA(self, server, session, envelope):
        if envelope.rcpt_tos[0].startswith("crash"):
            return "421 4.3.0 Shutting down"
        return await super().handle_DATA(server, session, envelope)


class PipeliningClosingHandler(ClosingHandler, PipeliningHandler):
    pass


@pytest.mark.parametrize(
    "handler_class", [ClosingHandler, PipeliningClosingHandler], ids=["serial", "pipelining"]
)
def test_connection_closing_mid_batch_leaves_every_message_recorded_and_reconnects(handler_class):
    handler = handler_class()
    controller = Controller(handler, hostname="127.0.0.1", port=_free_port())
    controller.start()
    try:
        msgs = [_msg("a@example.com", "c1"), _msg("crash@example.com", "c2"), _msg("b@example.com", "c3")]
        with EmailChannel(EmailSettings(port=controller.port)) as ch:
            outcomes = ch.send_batch(msgs)
            assert [o.status for o in outcomes] == ["sent", "temporary_failure", "temporary_failure"]
            assert outcomes[1].code == 421 and not outcomes[1].suppress
            assert ch.send_batch([msgs[2]])[0].status == "sent"
            assert ch.connections_opened == 2
    finally:
        controller.stop()


def test_rate_limit_paces_sends(smtp_server):
    import time

    handler, port = smtp_server
    msgs = [_msg(f"u{i}@example.com", f"c{i}") for i in range(6)]
    with EmailChannel(EmailSettings(port=port, rate_per_second=50)) as ch:
        t0 = time.monotonic()
        assert all(o.status == "sent" for o in ch.send_batch(msgs))
        assert time.monotonic() - t0 >= 5 / 50 * 0.9


def test_settings_tables():
    from micromarketing.config import ChannelsSettings, ServerSettings

    cfg = ChannelsSettings.model_validate(
        {
            "email": {
                "host": "smtp.example.com",
                "port": 587,
                "sender": "news@shop.example",
                "starttls": True,
            },
            "retry": {"max_attempts": 3},
        }
    )
    assert cfg.email.sender_domain == "shop.example" and cfg.retry.max_attempts == 3
    assert not cfg.email.dkim_enabled and cfg.webhook.url is None
    assert ServerSettings().public_url == "http://127.0.0.1:8000"
