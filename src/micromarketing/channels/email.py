"""Email over SMTP: MIME building (written directly; several times faster than ``EmailMessage``),
the RFC 2369/8058 unsubscribe headers, DKIM signing (dkimpy) and a connection-reusing sender.

Classification per message: 2xx → sent; SMTP 5xx on RCPT/DATA → permanent failure with
``suppress`` (hard bounce); 4xx → temporary failure; a lost connection → temporary failure for
the message in flight and the rest of the batch (the next batch reconnects).

When the server advertises ``PIPELINING`` (RFC 2920; Postfix, Exim and the big providers do) a
message costs one round trip instead of four: its content goes out in the same write as the
next message's envelope.  Each outcome is handed to the caller's ``done`` before the next
message's content is written, so however the client dies, at most one message has been
accepted by the server without being recorded.  ``smtplib`` does not pipeline, so the commands
are written with its ``send`` and the replies read with its ``getreply``.
"""

from __future__ import annotations

import base64
import html as html_lib
import re
import smtplib
import ssl
import time
from collections.abc import Iterable, Iterator
from email.header import Header
from email.utils import formataddr, formatdate
from pathlib import Path
from urllib.parse import quote

from micromarketing.channels.base import ChannelKind, DeliveryOutcome, Done, OutgoingMessage
from micromarketing.config import EmailSettings, secret_from_env
from micromarketing.errors import ConfigError

#: Headers the DKIM signature covers; both unsubscribe headers must be signed for one-click.
DKIM_HEADERS: tuple[bytes, ...] = (
    b"from",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"mime-version",
    b"content-type",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
)


def email_warnings(settings: EmailSettings) -> list[str]:
    """Warnings ``campaign plan`` prints for these settings (empty when all is well)."""
    warnings = []
    if not settings.dkim_enabled:
        warnings.append(
            "no DKIM key configured (channels.email.dkim_key_path): mailbox providers ignore "
            "one-click unsubscribe (RFC 8058) on unsigned mail"
        )
    if settings.username and not settings.starttls and settings.host not in ("127.0.0.1", "localhost", "::1"):
        warnings.append("SMTP login without STARTTLS sends the password in clear text")
    return warnings


def message_id_header(message_id: str, domain: str) -> str:
    """The ``Message-ID`` header value for a message key: ``<{key}@{domain}>``."""
    return f"<{message_id}@{domain}>"


def _token_of(url: str) -> str:
    return url.rstrip("/").rpartition("/")[2]


def list_unsubscribe_value(url: str, mailto: str) -> str:
    """``<https URL>, <mailto:…?subject=unsubscribe%20TOKEN>`` (RFC 2369), HTTPS first."""
    return f"<{url}>, <mailto:{mailto}?subject={quote('unsubscribe ' + _token_of(url))}>"


def _ensure_link_text(text: str, url: str) -> str:
    return text if url in text else f"{text.rstrip()}\n\nUnsubscribe: {url}\n"


def _ensure_link_html(html: str, url: str) -> str:
    if url in html or html_lib.escape(url) in html:
        return html
    link = f'<p><a href="{html_lib.escape(url)}">Unsubscribe</a></p>'
    lower = html.lower()
    at = lower.rfind("</body>")
    return html[:at] + link + html[at:] if at >= 0 else html + link


class DkimSigner:
    """Signs built messages with an RSA (or ed25519) key in PEM form via dkimpy."""

    def __init__(self, private_key: bytes, selector: str, domain: str) -> None:
        import dkim  # dkimpy; imported here so unsigned sending does not need it

        self._dkim = dkim
        self.private_key = private_key
        self.selector = selector.encode()
        self.domain = domain.encode()

    @classmethod
    def from_settings(cls, settings: EmailSettings) -> DkimSigner | None:
        """A signer for the configured key, or None when no key is configured."""
        if not settings.dkim_key_path:
            return None
        if not settings.dkim_selector:
            raise ConfigError("channels.email.dkim_selector is required with dkim_key_path")
        path = Path(settings.dkim_key_path)
        try:
            key = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"channels.email.dkim_key_path: cannot read {path}: {exc}") from exc
        return cls(key, settings.dkim_selector, settings.dkim_domain or settings.sender_domain)

    def sign(self, data: bytes) -> bytes:
        """``data`` with a ``DKIM-Signature`` header prepended (relaxed/simple canonicalisation)."""
        signature = self._dkim.sign(
            data,
            self.selector,
            self.domain,
            self.private_key,
            include_headers=list(DKIM_HEADERS),
            canonicalize=(b"relaxed", b"simple"),
        )
        return signature + data


#: Headers the channel writes itself; a message's own ``headers`` may not set them.
RESERVED_HEADERS = frozenset(
    {
        "from",
        "to",
        "cc",
        "bcc",
        "subject",
        "date",
        "message-id",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
        "list-unsubscribe",
        "list-unsubscribe-post",
        "dkim-signature",
    }
)
#: A connection that answered this recently is reused without a NOOP first (one round trip
#: saved per batch; a one-message batch per send, as the outbox worker makes, halves the cost).
NOOP_AFTER_IDLE_SECONDS = 5.0
_MESSAGE_ID = re.compile(r"^[A-Za-z0-9._\-]{1,200}$")
#: A message with its wire form, or with the permanent failure that kept it from being built.
_Built = tuple[OutgoingMessage, bytes | DeliveryOutcome]


def _encode_header(value: str, name: str) -> str:
    if any(c in value for c in "\r\n\x00"):
        raise ValueError(f"{name} header contains a line break")
    if value.isascii() and len(value) < 900:
        return value
    return Header(value, "utf-8", header_name=name).encode(linesep="\r\n")


def _b64_part(content_type: str, body: str) -> str:
    encoded = base64.encodebytes(body.encode()).decode("ascii").replace("\n", "\r\n")
    return (
        f'Content-Type: {content_type}; charset="utf-8"\r\nContent-Transfer-Encoding: base64\r\n\r\n{encoded}'
    )


def build_email(
    msg: OutgoingMessage,
    *,
    sender: str,
    domain: str,
    sender_name: str | None = None,
    unsubscribe_mailto: str | None = None,
    date: str | None = None,
    signer: DkimSigner | None = None,
) -> bytes:
    """The wire form (CRLF line ends) of ``msg``: multipart/alternative text + HTML (base64
    UTF-8 parts), a stable ``Message-ID``, both unsubscribe headers and a visible unsubscribe link
    in each part.

    Written directly rather than through ``email.mime``: header folding in the stdlib generator
    was most of the build time (see ``benchmarks/email_build_bench.py``).  The MIME boundary is
    derived from the message key and cannot occur inside base64 text.  Raises ValueError for a
    non-transactional message without an unsubscribe link, a header value with a line break or
    a non-ASCII address (SMTPUTF8 is not used)."""
    url = msg.unsubscribe_url
    if url is None and not msg.transactional:
        raise ValueError("a marketing email needs an unsubscribe_url")
    if not _MESSAGE_ID.match(msg.message_id):
        raise ValueError(f"message_id must be 1-200 of [A-Za-z0-9._-]: {msg.message_id!r}")
    if not msg.to.isascii() or any(c in msg.to for c in "\r\n<>,\x00 "):
        raise ValueError(f"not a deliverable ASCII address: {msg.to!r}")
    text, html = msg.text, msg.html
    if url is not None:
        text = _ensure_link_text(text, url)
        if html is not None:
            html = _ensure_link_html(html, url)
    lines = [
        f"From: {formataddr((sender_name, sender)) if sender_name else sender}",
        f"To: {msg.to}",
        f"Subject: {_encode_header(msg.subject, 'Subject')}",
        f"Date: {date or formatdate(usegmt=True)}",
        f"Message-ID: {message_id_header(msg.message_id, domain)}",
        "MIME-Version: 1.0",
    ]
    if url is not None:
        mailto = unsubscribe_mailto or f"unsubscribe@{domain}"
        lines.append("List-Unsubscribe: " + list_unsubscribe_value(url, mailto).replace(", ", ",\r\n "))
        lines.append("List-Unsubscribe-Post: List-Unsubscribe=One-Click")
    for name, value in msg.headers.items():
        if not name.isascii() or not name.replace("-", "").isalnum():
            raise ValueError(f"invalid header name {name!r}")
        if name.lower() in RESERVED_HEADERS:
            raise ValueError(f"header {name!r} is written by the channel and cannot be set")
        lines.append(f"{name}: {_encode_header(value, name)}")
    if html is None:
        body = _b64_part("text/plain", text)
    else:
        boundary = f"=_mm_{msg.message_id[:40]}"
        lines.append(f'Content-Type: multipart/alternative; boundary="{boundary}"')
        body = (
            f"\r\n--{boundary}\r\n{_b64_part('text/plain', text)}"
            f"--{boundary}\r\n{_b64_part('text/html', html)}"
            f"--{boundary}--\r\n"
        )
    data = ("\r\n".join(lines) + "\r\n" + body).encode("ascii")
    return signer.sign(data) if signer is not None else data


def _sender_refused(message_id: str, code: int, reason: bytes | str) -> DeliveryOutcome:
    """MAIL FROM rejected: our configuration, not the recipient; retried, never suppressed."""
    text = reason.decode(errors="replace") if isinstance(reason, bytes) else str(reason)
    return DeliveryOutcome.temporary(message_id, f"sender refused: {text!r}", code=code)


_LEADING_DOT = re.compile(rb"(?m)^\.")


def _dot_stuffed(data: bytes) -> bytes:
    """``data`` as DATA content (RFC 5321 4.5.2): leading dots doubled, ended by CRLF . CRLF."""
    data = _LEADING_DOT.sub(b"..", data)
    return data + (b".\r\n" if data.endswith(b"\r\n") else b"\r\n.\r\n")


def _classify(message_id: str, code: int, reason: bytes | str) -> DeliveryOutcome:
    text = reason.decode(errors="replace") if isinstance(reason, bytes) else str(reason)
    if 500 <= code < 600:
        return DeliveryOutcome.permanent(message_id, text, code=code, suppress=True)
    if 400 <= code < 500:
        return DeliveryOutcome.temporary(message_id, text, code=code)
    return DeliveryOutcome.temporary(message_id, f"unexpected SMTP reply: {text}", code=code)


class EmailChannel:
    """Sends :class:`OutgoingMessage` s over one reused SMTP connection.

    ``password`` defaults to the environment variable ``settings.password_env``;
    ``signer`` to the settings' DKIM key (None: unsigned)."""

    kind: ChannelKind = "email"

    def __init__(
        self,
        settings: EmailSettings,
        *,
        password: str | None = None,
        signer: DkimSigner | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.settings = settings
        self._password = password if password is not None else secret_from_env(settings.password_env)
        self._signer = signer if signer is not None else DkimSigner.from_settings(settings)
        self._ssl_context = ssl_context
        self._smtp: smtplib.SMTP | None = None
        self._next_send = 0.0
        self._last_reply = 0.0  # time.monotonic() of the server's last answer on this connection
        self.connections_opened = 0

    # -- connection ---------------------------------------------------------------------------
    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        smtp = smtplib.SMTP(s.host, s.port, timeout=s.timeout_seconds)
        try:
            smtp.ehlo()
            if s.starttls:
                smtp.starttls(context=self._ssl_context or ssl.create_default_context())
                smtp.ehlo()
            if s.username:
                if self._password is None:
                    raise ConfigError(f"channels.email.username is set but {s.password_env} is not")
                smtp.login(s.username, self._password)
        except BaseException:
            smtp.close()
            raise
        self.connections_opened += 1
        self._last_reply = time.monotonic()
        return smtp

    def _connection(self) -> smtplib.SMTP:
        if self._smtp is not None:
            if time.monotonic() - self._last_reply < NOOP_AFTER_IDLE_SECONDS:
                return self._smtp
            try:
                if self._smtp.noop()[0] == 250:
                    self._last_reply = time.monotonic()
                    return self._smtp
            except (smtplib.SMTPException, OSError):
                pass
            self._drop()
        self._smtp = self._connect()
        return self._smtp

    def _drop(self) -> None:
        if self._smtp is not None:
            try:
                self._smtp.close()
            except OSError:
                pass
            self._smtp = None

    def close(self) -> None:
        """QUIT and close the connection (a later batch reconnects)."""
        if self._smtp is not None:
            try:
                self._smtp.quit()
            except (smtplib.SMTPException, OSError):
                pass
            self._drop()

    def __enter__(self) -> EmailChannel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- sending ------------------------------------------------------------------------------
    def build(self, msg: OutgoingMessage) -> bytes:
        """The signed wire form of ``msg`` under this channel's settings."""
        s = self.settings
        return build_email(
            msg,
            sender=s.sender,
            domain=s.sender_domain,
            sender_name=s.sender_name,
            unsubscribe_mailto=s.unsubscribe_mailto,
            signer=self._signer,
        )

    def _pace(self) -> None:
        rate = self.settings.rate_per_second
        if rate:
            now = time.monotonic()
            if now < self._next_send:
                time.sleep(self._next_send - now)
            self._next_send = max(now, self._next_send) + 1.0 / rate

    def send_batch(
        self, messages: Iterable[OutgoingMessage], done: Done | None = None
    ) -> list[DeliveryOutcome]:
        """Send each message; one outcome per message, in order, each handed to ``done`` as soon
        as the server answered and before the next message's content goes out (see the module
        docstring)."""
        outcomes: list[DeliveryOutcome] = []

        def finish(msg: OutgoingMessage, outcome: DeliveryOutcome) -> None:
            outcomes.append(outcome)
            if done is not None:
                done(msg, outcome)

        built = self._built(messages)
        first = next(built, None)
        if first is None:
            return outcomes
        try:
            smtp = self._connection()
        except ConfigError:
            raise
        except smtplib.SMTPResponseException as exc:
            self._give_up(first, built, f"connect: {exc.smtp_code} {exc.smtp_error!r}", finish, exc.smtp_code)
            return outcomes
        except (smtplib.SMTPException, OSError) as exc:
            self._give_up(first, built, f"connect: {exc}", finish)
            return outcomes
        try:
            if smtp.has_extn("pipelining"):
                self._send_pipelined(smtp, first, built, finish)
            else:
                self._send_serially(smtp, first, built, finish)
        except BaseException:
            self._drop()  # e.g. ``done`` failed: replies may be outstanding on the connection
            raise
        return outcomes

    def _built(self, messages: Iterable[OutgoingMessage]) -> Iterator[_Built]:
        """Each message with its wire form, or with the permanent failure that kept it from being built."""
        for msg in messages:
            try:
                yield msg, self.build(msg)
            except ValueError as exc:
                yield msg, DeliveryOutcome.permanent(msg.message_id, str(exc))

    def _give_up(
        self,
        first: _Built | None,
        rest: Iterator[_Built],
        reason: str,
        finish: Done,
        code: int | None = None,
    ) -> None:
        """Every remaining message temporary (``reason``) unless it could not even be built."""
        for msg, data in ([first] if first is not None else []) + list(rest):
            if isinstance(data, DeliveryOutcome):
                finish(msg, data)
            else:
                finish(msg, DeliveryOutcome.temporary(msg.message_id, reason, code=code))

    def _after(
        self, outcome: DeliveryOutcome, following: _Built | None, rest: Iterator[_Built], finish: Done
    ) -> bool:
        """After a 421 (service closing) drop the connection and give up on the rest; True to go on."""
        if outcome.code != 421:
            self._last_reply = time.monotonic()
            return True
        self._drop()
        self._give_up(following, rest, "server closing (421)", finish)
        return False

    def _send_serially(self, smtp: smtplib.SMTP, first: _Built, rest: Iterator[_Built], finish: Done) -> None:
        """One ``sendmail`` (MAIL, RCPT, DATA, content: four round trips) per message."""
        current: _Built | None = first
        while current is not None:
            msg, data = current
            if isinstance(data, DeliveryOutcome):
                finish(msg, data)
                current = next(rest, None)
                continue
            self._pace()
            try:
                outcome = self._sendmail(smtp, msg, data)
            except (smtplib.SMTPException, OSError) as exc:
                self._drop()
                finish(msg, DeliveryOutcome.temporary(msg.message_id, f"connection lost: {exc}"))
                self._give_up(None, rest, f"connection lost: {exc}", finish)
                return
            finish(msg, outcome)
            following = next(rest, None)
            if not self._after(outcome, following, rest, finish):
                return
            current = following

    def _sendmail(self, smtp: smtplib.SMTP, msg: OutgoingMessage, data: bytes) -> DeliveryOutcome:
        """The outcome of one ``sendmail``; raises only when the connection is unusable."""
        try:
            smtp.sendmail(self.settings.sender, [msg.to], data)
        except smtplib.SMTPRecipientsRefused as exc:
            code, reason = next(iter(exc.recipients.values()))
            return _classify(msg.message_id, code, reason)
        except smtplib.SMTPSenderRefused as exc:
            return _sender_refused(msg.message_id, exc.smtp_code, exc.smtp_error)
        except smtplib.SMTPServerDisconnected:
            raise
        except smtplib.SMTPResponseException as exc:  # SMTPDataError and the like
            return _classify(msg.message_id, exc.smtp_code, exc.smtp_error)
        return DeliveryOutcome.sent(msg.message_id, code=250)

    def _envelope(self, msg: OutgoingMessage) -> bytes:
        return f"MAIL FROM:<{self.settings.sender}>\r\nRCPT TO:<{msg.to}>\r\nDATA\r\n".encode("ascii")

    def _send_pipelined(
        self, smtp: smtplib.SMTP, first: _Built, rest: Iterator[_Built], finish: Done
    ) -> None:
        """RFC 2920 pipelining, one round trip per message: the content of message *k* and the
        envelope (MAIL, RCPT, DATA) of message *k + 1* go out in one write, then the replies are
        read.  Message *k* is handed to ``finish`` before *k + 1*'s content is written, so only
        one message is ever delivered but not yet recorded; an envelope alone delivers nothing."""
        skipped: list[_Built] = []

        def next_sendable() -> _Built | None:
            for item in rest:
                if not isinstance(item[1], DeliveryOutcome):
                    return item
                skipped.append(item)  # could not be built: finished after the message before it
            return None

        def finish_skipped() -> None:
            while skipped:
                finish(*skipped.pop(0))  # type: ignore[arg-type]

        current: _Built | None = first if not isinstance(first[1], DeliveryOutcome) else None
        if current is None:
            finish(*first)  # type: ignore[arg-type]
            current = next_sendable()
            finish_skipped()
        try:
            if current is not None:
                smtp.send(self._envelope(current[0]))
        except (smtplib.SMTPException, OSError) as exc:
            self._drop()
            self._give_up(current, rest, f"connection lost: {exc}", finish)
            return
        while current is not None:
            msg, data = current
            following = next_sendable()
            try:
                outcome = self._pipelined_transaction(smtp, msg, data, following)  # type: ignore[arg-type]
            except (smtplib.SMTPException, OSError) as exc:
                self._drop()
                finish(msg, DeliveryOutcome.temporary(msg.message_id, f"connection lost: {exc}"))
                finish_skipped()
                self._give_up(following, rest, f"connection lost: {exc}", finish)
                return
            finish(msg, outcome)
            finish_skipped()
            if not self._after(outcome, following, rest, finish):
                return
            current = following

    def _pipelined_transaction(
        self, smtp: smtplib.SMTP, msg: OutgoingMessage, data: bytes, following: _Built | None
    ) -> DeliveryOutcome:
        """Read the replies to ``msg``'s envelope (already sent), write its content with the
        envelope of ``following``, and read the reply to the content: ``msg``'s outcome."""
        mail, rcpt, go = smtp.getreply(), smtp.getreply(), smtp.getreply()
        tail = self._envelope(following[0]) if following is not None else b""
        if mail[0] == 250 and rcpt[0] in (250, 251) and go[0] == 354:
            self._pace()
            smtp.send(_dot_stuffed(data) + tail)
            code, reply = smtp.getreply()
            return (
                DeliveryOutcome.sent(msg.message_id, code=250)
                if code == 250
                else _classify(msg.message_id, code, reply)
            )
        if mail[0] != 250:
            outcome = _sender_refused(msg.message_id, *mail)
        elif rcpt[0] not in (250, 251):
            outcome = _classify(msg.message_id, *rcpt)
        else:
            outcome = _classify(msg.message_id, *go)
        if go[0] == 354:  # DATA accepted without a recipient: end the empty transaction
            smtp.send(b".\r\n")
            smtp.getreply()
        smtp.send(b"RSET\r\n" + tail)
        smtp.getreply()
        return outcome
