"""Build and send marketing emails: messages/s for each step, against baselines in the same run.

* **build, EmailMessage (baseline)** — ``email.message.EmailMessage`` with ``set_content`` +
  ``add_alternative`` and the same headers, serialised with ``as_bytes``;
* **build, compat32 email.mime (baseline)** — ``MIMEMultipart``/``MIMEText`` with the same headers;
* **build, direct (micromarketing)** — :func:`micromarketing.channels.email.build_email` (headers
  and base64 parts written directly, unsubscribe headers, visible links);
* **build + DKIM** — the same with a 2048-bit RSA signature (dkimpy), when ``openssl`` exists;
* **send** — :class:`~micromarketing.channels.email.EmailChannel` over one reused connection to an
  aiosmtpd sink running in *its own process* on 127.0.0.1 (sharing a process halves the rate:
  both sides contend for the GIL), in batches of 100, build included; then two channels (two
  connections) in two threads, as an outbox worker pool would run them.

Wall-clock and process CPU time are both printed.

    .venv/bin/python benchmarks/email_build_bench.py [--messages 5000]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from email.header import Header
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path

from micromarketing.channels.settings import EmailSettings
from micromarketing.channels.tokens import unsubscribe_url

from micromarketing.channels import OutgoingMessage, message_key
from micromarketing.channels.email import (
    DkimSigner,
    EmailChannel,
    build_email,
    list_unsubscribe_value,
    message_id_header,
)

SECRET = b"bench-secret"
HTML = (
    "<html><body><h1>Hello {n}</h1>" + "<p>Product card with a price and a link.</p>" * 12 + "</body></html>"
)
TEXT = "Hello {n}\n" + "Product card with a price and a link.\n" * 12


def _messages(n: int) -> list[OutgoingMessage]:
    return [
        OutgoingMessage(
            message_id=message_key("bench", f"c{i}", "email"),
            customer_id=f"c{i}",
            channel="email",
            to=f"user{i}@example.com",
            subject=f"Your picks, customer {i} — spring édition",
            text=TEXT.format(n=i),
            html=HTML.format(n=i),
            unsubscribe_url=unsubscribe_url("https://shop.example", SECRET, f"c{i}"),
        )
        for i in range(n)
    ]


def _baseline(msg: OutgoingMessage) -> bytes:
    m = EmailMessage()
    m["From"] = "news@shop.example"
    m["To"] = msg.to
    m["Subject"] = msg.subject
    m["Date"] = formatdate(usegmt=True)
    m["Message-ID"] = message_id_header(msg.message_id, "shop.example")
    m["List-Unsubscribe"] = list_unsubscribe_value(msg.unsubscribe_url or "", "unsubscribe@shop.example")
    m["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    m.set_content(msg.text)
    m.add_alternative(msg.html, subtype="html")
    return m.as_bytes()


def _compat32(msg: OutgoingMessage) -> bytes:
    from email.mime.multipart import MIMEMultipart
    from email.mime.text import MIMEText

    root = MIMEMultipart("alternative")
    root.attach(MIMEText(msg.text, "plain", "utf-8"))
    root.attach(MIMEText(msg.html or "", "html", "utf-8"))
    root["From"] = "news@shop.example"
    root["To"] = msg.to
    root["Subject"] = Header(msg.subject, "utf-8")
    root["Date"] = formatdate(usegmt=True)
    root["Message-ID"] = message_id_header(msg.message_id, "shop.example")
    root["List-Unsubscribe"] = list_unsubscribe_value(msg.unsubscribe_url or "", "unsubscribe@shop.example")
    root["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    return root.as_bytes()


def _timed(label: str, n: int, fn) -> float:
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    print(f"{label:<42} {n / wall:>9,.0f} msg/s wall  {n / max(cpu, 1e-9):>9,.0f} msg/s CPU")
    return n / wall


def _sink(port: int, ready, count) -> None:
    import asyncio  # noqa: F401  (aiosmtpd runs its own loop thread)

    from aiosmtpd.controller import Controller

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            with count.get_lock():
                count.value += 1
            return "250 OK"

    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    ready.set()
    try:
        while True:
            time.sleep(3600)
    finally:
        controller.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    n = parser.parse_args().messages
    msgs = _messages(n)
    print(f"{n} messages, text + HTML (~{len(build_email(msgs[0], sender='a@b', domain='b'))} bytes each)")

    _timed("build, EmailMessage (baseline)", n, lambda: [_baseline(m) for m in msgs])
    _timed("build, compat32 email.mime (baseline)", n, lambda: [_compat32(m) for m in msgs])
    _timed(
        "build, direct (micromarketing)",
        n,
        lambda: [build_email(m, sender="news@shop.example", domain="shop.example") for m in msgs],
    )
    if shutil.which("openssl"):
        with tempfile.TemporaryDirectory() as tmp:
            key = Path(tmp) / "k.pem"
            subprocess.run(
                ["openssl", "genrsa", "-traditional", "-out", str(key), "2048"],
                check=True,
                capture_output=True,
            )
            signer = DkimSigner(key.read_bytes(), "mm1", "shop.example")
            k = min(n, 500)
            _timed(
                "build + DKIM rsa-sha256 2048 (micromarketing)",
                k,
                lambda: [
                    build_email(m, sender="news@shop.example", domain="shop.example", signer=signer)
                    for m in msgs[:k]
                ],
            )

    ctx = mp.get_context("spawn")
    port, ready, count = _free_port(), ctx.Event(), ctx.Value("i", 0)
    sink = ctx.Process(target=_sink, args=(port, ready, count), daemon=True)
    sink.start()
    try:
        if not ready.wait(30):
            sys.exit("SMTP sink did not start")

        def send() -> None:
            with EmailChannel(EmailSettings(port=port, sender="news@shop.example")) as ch:
                for i in range(0, n, 100):
                    outcomes = ch.send_batch(msgs[i : i + 100])
                    assert all(o.status == "sent" for o in outcomes), outcomes[0]

        _timed("send, 1 SMTP connection, sink in own process", n, send)

        def send_threads(k: int) -> None:
            from concurrent.futures import ThreadPoolExecutor

            def worker(part: list[OutgoingMessage]) -> None:
                with EmailChannel(EmailSettings(port=port, sender="news@shop.example")) as ch:
                    for i in range(0, len(part), 100):
                        assert all(o.status == "sent" for o in ch.send_batch(part[i : i + 100]))

            with ThreadPoolExecutor(k) as pool:
                list(pool.map(worker, [msgs[j::k] for j in range(k)]))

        _timed("send, 2 channels in 2 threads", n, lambda: send_threads(2))
        print(f"sink received {count.value} messages (2 × {n} expected)")
    finally:
        sink.terminate()
        sink.join(10)


if __name__ == "__main__":
    main()
