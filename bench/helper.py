#!/usr/bin/env python3
"""helper.py - small loopback-only tools for bench/failover.sh and bench/checks-cost.sh.

Standard library only (Python 3.8+). Every loop is bounded in time.

  helper.py httpd --listen 127.0.0.10:18080 [--stats FILE] [--log FILE] [--lifetime S]
      A tiny HTTP/1.1 responder (asyncio): reads a request head, answers
      "200 OK" with "Connection: close", closes. --stats FILE: one line a
      second, "EPOCH TOTAL_REQUESTS" (cumulative). --log FILE: one line per
      request, "EPOCH", flushed at once (survives SIGKILL). Exits after
      --lifetime seconds (default 7200) whatever happens. SIGUSR1: hang
      (accept, read the request, never answer; hold the connection until the
      client closes it, at most 60 s); SIGUSR2: answer again.

  helper.py wait-answer --server 127.0.0.1:5329 --name mls.example.test --want 127.0.0.99
                        [--t0 EPOCH] [--ready HOST:PORT] [--poll 0.05] [--timeout 30]
      Polls NAME/A over UDP every --poll seconds until the answer is exactly
      --want (one address), at most --timeout seconds after --t0 (default:
      now). With --ready, a thread also tries TCP connects to HOST:PORT every
      10 ms until one is accepted. Prints one line:
        answer_s=S ready_s=S polls=N lost=N odd=N last=ADDRS
      answer_s: seconds from --t0 to the send time of the first poll that saw
      --want; ready_s: from --t0 to the first accepted connect (NA without
      --ready); lost: polls with no answer within 0.2 s; odd: answers that were
      neither --want nor the first answer seen (e.g. empty, an error rcode).
      Exit 0 when --want was seen, 1 on timeout (answer_s=NA).

  helper.py flips --admin-sock state/admin.sock --pid PID --service mls
                  --server 127.0.0.1:5349 --name flip.big.test --down 127.0.0.80
                  --up 127.0.0.10 [--count 40]
      Sets and clears an operator override of SERVICE --count times over the
      admin socket, waiting after each until NAME/A answers --down (or --up):
      each flip is a new Snapshot, served. Prints one line:
        flips=N cpu_ms_per_flip=X wall_ms_median=Y
      cpu_ms_per_flip: the server's CPU (utime+stime of PID) per flip, the
      API call included; wall_ms_median: override sent to answer seen.
      Each wait is bounded (10 s); exit 1 if an answer never came.

  helper.py dns-latency --server 127.0.0.1:5339 --name ns1.example.test
                        [--duration 10] [--every 0.01] [--log FILE]
      One UDP query for NAME/A every --every seconds (one at a time) for
      --duration seconds; prints n= lost= p50_ms= p99_ms= p999_ms= max_ms=.
      --log FILE: one line per query, "SENT_EPOCH LATENCY_MS" (-1: lost).
"""

import argparse
import asyncio
import ipaddress
import random
import signal
import socket
import struct
import sys
import threading
import time


def loopback_hostport(text, what):
    host, _, port = text.rpartition(":")
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
        port = int(port)
    except ValueError:
        sys.exit(f"helper.py: {what} must be IP:PORT, got {text!r}")
    if not ip.is_loopback:
        sys.exit(f"helper.py: refusing non-loopback {what} {text}")
    if not 0 < port < 65536:
        sys.exit(f"helper.py: bad port in {what} {text}")
    return str(ip), port


# ---- httpd -------------------------------------------------------------------

RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n"
            b"Connection: close\r\n\r\nOK\n")


def cmd_httpd(args):
    host, port = loopback_hostport(args.listen, "--listen")
    count = 0
    hang = False
    log = open(args.log, "a", buffering=1) if args.log else None

    async def handle(reader, writer):
        nonlocal count
        try:
            # the request head, bounded in size and time
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            if hang:   # until the client gives up (EOF), at most 60 s
                await asyncio.wait_for(reader.read(), 60)
                return
            writer.write(RESPONSE)
            await asyncio.wait_for(writer.drain(), 5)
            count += 1
            if log:
                log.write(f"{time.time():.6f}\n")
        except (asyncio.TimeoutError, asyncio.IncompleteReadError,
                asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()

    async def stats():
        with open(args.stats, "a", buffering=1) as f:
            while True:
                f.write(f"{time.time():.3f} {count}\n")
                await asyncio.sleep(1 - time.time() % 1)   # on the second

    def set_hang(value):
        nonlocal hang
        hang = value

    async def main():
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGUSR1, set_hang, True)
        loop.add_signal_handler(signal.SIGUSR2, set_hang, False)
        server = await asyncio.start_server(handle, host, port, backlog=4096,
                                            reuse_address=True)
        if args.stats:
            asyncio.get_running_loop().create_task(stats())
        async with server:
            await asyncio.sleep(args.lifetime)

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass


# ---- wait-answer -----------------------------------------------------------------

def dns_query(qid, name):
    q = struct.pack("!HHHHHH", qid, 0x0000, 1, 0, 0, 0)   # RD clear: authoritative
    for label in name.rstrip(".").split("."):
        q += bytes([len(label)]) + label.encode()
    return q + b"\x00" + struct.pack("!HH", 1, 1)           # A, IN


def skip_name(msg, off):
    while True:
        n = msg[off]
        if n & 0xC0 == 0xC0:
            return off + 2
        if n == 0:
            return off + 1
        off += 1 + n


def parse_a(msg, qid):
    """-> (rcode, sorted A addresses) or None if not our answer."""
    if len(msg) < 12:
        return None
    rid, flags, qd, an, _, _ = struct.unpack("!HHHHHH", msg[:12])
    if rid != qid or not flags & 0x8000:
        return None
    off = 12
    for _ in range(qd):
        off = skip_name(msg, off) + 4
    addrs = []
    for _ in range(an):
        off = skip_name(msg, off)
        rtype, _, _, rdlen = struct.unpack("!HHIH", msg[off:off + 10])
        off += 10
        if rtype == 1 and rdlen == 4:
            addrs.append(socket.inet_ntoa(msg[off:off + 4]))
        off += rdlen
    return flags & 0xF, sorted(addrs)


def cmd_wait_answer(args):
    host, port = loopback_hostport(args.server, "--server")
    t0 = args.t0 if args.t0 is not None else time.time()
    deadline = t0 + args.timeout
    ready_at = [None]

    if args.ready:
        rhost, rport = loopback_hostport(args.ready, "--ready")

        def ready_loop():
            while time.time() < deadline:
                try:
                    with socket.create_connection((rhost, rport), timeout=0.2):
                        ready_at[0] = time.time()
                        return
                except OSError:
                    time.sleep(0.01)

        threading.Thread(target=ready_loop, daemon=True).start()

    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(fam, socket.SOCK_DGRAM)
    sock.connect((host, port))
    want = [args.want]
    polls = lost = odd = 0
    first = last = None
    seen_at = None
    while time.time() < deadline:
        sent = time.time()
        qid = random.randrange(65536)
        sock.send(dns_query(qid, args.name))
        polls += 1
        got = None
        sock.settimeout(0.2)
        while got is None:
            try:
                got = parse_a(sock.recv(4096), qid)
            except (socket.timeout, ConnectionRefusedError):
                break
        if got is None:
            lost += 1
        else:
            rcode, addrs = got
            last = addrs if rcode == 0 else [f"rcode{rcode}"]
            if first is None:
                first = last
            if rcode == 0 and addrs == want:
                seen_at = sent
                break
            if last != first:
                odd += 1
        time.sleep(max(0.0, sent + args.poll - time.time()))
    if seen_at is not None and args.ready:
        # the answer changed; give the connect thread a moment to report
        end = min(deadline, time.time() + 1)
        while ready_at[0] is None and time.time() < end:
            time.sleep(0.01)
    fmt = lambda t: "NA" if t is None else f"{t - t0:.3f}"   # noqa: E731
    print(f"answer_s={fmt(seen_at)} ready_s={fmt(ready_at[0]) if args.ready else 'NA'} "
          f"polls={polls} lost={lost} odd={odd} last={','.join(last or ['none'])}")
    return 0 if seen_at is not None else 1


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])     # utime, stime


def cmd_flips(args):
    import http.client
    import os

    class Unix(http.client.HTTPConnection):
        def connect(self):
            self.sock = socket.socket(socket.AF_UNIX)
            self.sock.connect(args.admin_sock)

    host, port = loopback_hostport(args.server, "--server")
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect((host, port))
    sock.settimeout(0.2)

    def answer():
        qid = random.randrange(65536)
        sock.send(dns_query(qid, args.name))
        try:
            got = parse_a(sock.recv(4096), qid)
        except (socket.timeout, ConnectionRefusedError):
            return None
        return got[1] if got else None

    count = max(1, min(args.count, 1000))
    walls = []
    start = cpu_ticks(args.pid)
    for i in range(count):
        down = i % 2 == 0
        c = Unix("detour")
        if down:
            c.request("PUT", f"/api/v1/overrides/{args.service}",
                      body='{"state":"down","by":"bench"}',
                      headers={"content-type": "application/json"})
        else:
            c.request("DELETE", f"/api/v1/overrides/{args.service}")
        t0 = time.monotonic()
        status = c.getresponse().status
        c.close()
        if status >= 300:
            print(f"override answered HTTP {status}", file=sys.stderr)
            return 1
        want = [args.down if down else args.up]
        while answer() != want:
            if time.monotonic() - t0 > 10:
                print(f"flip {i}: {args.name} never answered {want}", file=sys.stderr)
                return 1
            time.sleep(0.002)
        walls.append(time.monotonic() - t0)
    ticks = cpu_ticks(args.pid) - start
    hz = os.sysconf("SC_CLK_TCK")
    walls.sort()
    print(f"flips={count} cpu_ms_per_flip={ticks * 1000 / hz / count:.1f} "
          f"wall_ms_median={walls[len(walls) // 2] * 1000:.1f}")
    return 0


def cmd_dns_latency(args):
    """Queries NAME/A every --every seconds for --duration seconds; prints
    latency percentiles (ms) of the answers and the number lost (no answer in 1 s)."""
    host, port = loopback_hostport(args.server, "--server")
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(fam, socket.SOCK_DGRAM)
    sock.connect((host, port))
    lat, lost, end = [], 0, time.time() + min(args.duration, 3600)
    log = open(args.log, "w") if args.log else None
    while time.time() < end:
        sent = time.time()
        qid = random.randrange(65536)
        sock.send(dns_query(qid, args.name))
        sock.settimeout(1.0)
        got = None
        while got is None:
            try:
                got = parse_a(sock.recv(4096), qid)
            except (socket.timeout, ConnectionRefusedError):
                break
        if got is None:
            lost += 1
        else:
            lat.append((time.time() - sent) * 1000)
        if log:
            log.write(f"{sent:.6f} {lat[-1] if got else -1:.3f}\n")
        time.sleep(max(0.0, sent + args.every - time.time()))
    if log:
        log.close()
    lat.sort()
    pct = lambda q: f"{lat[min(len(lat) - 1, int(q * len(lat)))]:.3f}" if lat else "NA"  # noqa: E731
    print(f"n={len(lat)} lost={lost} p50_ms={pct(0.5)} p99_ms={pct(0.99)} "
          f"p999_ms={pct(0.999)} max_ms={f'{lat[-1]:.3f}' if lat else 'NA'}")
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    h = sub.add_parser("httpd")
    h.add_argument("--listen", required=True)
    h.add_argument("--stats")
    h.add_argument("--log")
    h.add_argument("--lifetime", type=float, default=7200)
    w = sub.add_parser("wait-answer")
    w.add_argument("--server", required=True)
    w.add_argument("--name", required=True)
    w.add_argument("--want", required=True)
    w.add_argument("--t0", type=float)
    w.add_argument("--ready")
    w.add_argument("--poll", type=float, default=0.05)
    w.add_argument("--timeout", type=float, default=30)
    d = sub.add_parser("dns-latency")
    d.add_argument("--server", required=True)
    d.add_argument("--name", required=True)
    d.add_argument("--duration", type=float, default=10)
    d.add_argument("--every", type=float, default=0.01)
    d.add_argument("--log")
    f = sub.add_parser("flips")
    f.add_argument("--admin-sock", required=True)
    f.add_argument("--pid", type=int, required=True)
    f.add_argument("--service", required=True)
    f.add_argument("--server", required=True)
    f.add_argument("--name", required=True)
    f.add_argument("--down", required=True)
    f.add_argument("--up", required=True)
    f.add_argument("--count", type=int, default=40)
    args = p.parse_args()
    if args.cmd == "flips":
        return cmd_flips(args)
    if args.cmd == "httpd":
        cmd_httpd(args)
        return 0
    if args.cmd == "dns-latency":
        return cmd_dns_latency(args)
    return cmd_wait_answer(args)


if __name__ == "__main__":
    sys.exit(main())
