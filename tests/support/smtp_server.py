#!/usr/bin/python3
"""A real SMTP server for detour's tests (aiosmtpd, Debian's python3-aiosmtpd).

Usage: smtp_server.py PORT OUTDIR [--starttls CERT KEY] [--implicit CERT KEY]
                      [--auth USER:PASSWORD]

Every message accepted is written to OUTDIR/NNNN.eml (the raw message) with
OUTDIR/NNNN.rcpt (one recipient per line) beside it; "ready" is printed once it listens.
With --starttls the server requires STARTTLS before MAIL; with --implicit it speaks TLS
from the first byte; with --auth it requires AUTH (PLAIN or LOGIN) with that user.
"""

import argparse
import os
import ssl
import sys
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Store:
    def __init__(self, outdir):
        self.outdir = outdir
        self.n = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.n += 1
            base = os.path.join(self.outdir, "%04d" % self.n)
        with open(base + ".rcpt.tmp", "w") as f:
            f.write("\n".join(envelope.rcpt_tos) + "\n")
        with open(base + ".eml.tmp", "wb") as f:
            f.write(envelope.original_content or envelope.content)
        os.rename(base + ".rcpt.tmp", base + ".rcpt")
        os.rename(base + ".eml.tmp", base + ".eml")
        return "250 OK"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("port", type=int)
    p.add_argument("outdir")
    p.add_argument("--starttls", nargs=2)
    p.add_argument("--implicit", nargs=2)
    p.add_argument("--auth")
    a = p.parse_args()
    os.makedirs(a.outdir, exist_ok=True)
    kw = {}
    if a.starttls:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(*a.starttls)
        kw.update(tls_context=ctx, require_starttls=True)
    if a.implicit:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(*a.implicit)
        kw.update(ssl_context=ctx)
    if a.auth:
        user, password = a.auth.split(":", 1)

        def check(server, session, envelope, mechanism, data):
            ok = (
                isinstance(data, LoginPassword)
                and data.login.decode() == user
                and data.password.decode() == password
            )
            # handled=False: the server answers 535 itself on a failure.
            return AuthResult(success=ok, handled=False)

        kw.update(
            authenticator=check,
            auth_required=True,
            # Implicit TLS is TLS from the first byte; aiosmtpd only counts STARTTLS.
            auth_require_tls=bool(a.starttls),
        )
    c = Controller(Store(a.outdir), hostname="127.0.0.1", port=a.port, **kw)
    if a.implicit:
        # The controller's own readiness probe would speak plain SMTP to a TLS port.
        c.ready_timeout = 5
    c.start()
    print("ready", flush=True)
    try:
        sys.stdin.read()
    finally:
        c.stop()


if __name__ == "__main__":
    main()
