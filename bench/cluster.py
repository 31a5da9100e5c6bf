#!/usr/bin/env python3
"""cluster.py - a detour cluster on loopback, measured against a lone instance.

usage: bench/cluster.py [--bin target/release/detour] [--reps 10] [--qps-secs 10]
                        [--qps-runs 3] [--checks 1000] [--churn-secs 30] [--skip qps,churn]

Standard library only; needs `etcd` (Debian etcd-server) and, for the qps part, dnsperf.
Everything listens on 127.0.0.0/8; every loop is bounded in count and time.

Three parts, each printed with its medians:

1. failover: three etcd members and three detour instances (quorum majority, each
   probing from its own source address 127.0.0.2-4) plus one lone detour (no [cluster])
   watch the same HTTP backend. Per rep the backend is killed; the time until *all
   three* cluster instances answer the outage address is set beside the time the lone
   instance takes, for the same kill. Then it is restarted and recovery is timed alike.
   Goal (issue 15): the cluster's median within 0.2 s of the lone instance's.
2. qps: dnsperf against one cluster instance, then against the lone one, alternating,
   --qps-runs times each, one UDP worker each: medians and the ratio (goal >= 0.98x: the
   DNS path never touches etcd).
3. churn: an extra cluster of three instances with --checks TCP checks at a 1 s
   interval (all passing), after start-up settles: etcd revisions and keys written per
   second over --churn-secs (only changes are written, so this should be ~0).
"""

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from helper import dns_query, parse_a  # noqa: E402

UP, DOWN = "127.0.0.10", "127.0.0.80"


def free_ports(n):
    """n distinct free ports (each socket held until all are chosen)."""
    held = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        held.append(s)
    ports = [s.getsockname()[1] for s in held]
    for s in held:
        s.close()
    return ports


def free_port():
    return free_ports(1)[0]


def query_a(port, name, timeout=0.2):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        qid = os.getpid() & 0xFFFF
        s.sendto(dns_query(qid, name), ("127.0.0.1", port))
        got = parse_a(s.recv(4096), qid)
        return got[1] if got else None
    except OSError:
        return None
    finally:
        s.close()


class Backend:
    """An HTTP responder on 127.0.0.1:PORT that can be stopped and started again."""

    def __init__(self, port):
        self.port = port
        self.sock = None
        self.alive = False

    def start(self):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(256)
        s.settimeout(0.2)
        self.sock, self.alive = s, True

        def serve(sock):
            while self.alive and self.sock is sock:
                try:
                    c, _ = sock.accept()
                except OSError:
                    continue
                try:
                    c.settimeout(0.5)
                    c.recv(2048)
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK")
                except OSError:
                    pass
                c.close()
            sock.close()

        threading.Thread(target=serve, args=(s,), daemon=True).start()

    def stop(self):
        self.alive = False
        self.sock = None
        time.sleep(0.25)  # the serving thread closes the socket within its accept timeout


class Etcd:
    def __init__(self, tmp, n=3):
        ports = free_ports(2 * n)
        self.members = [(f"m{i}", ports[2 * i], ports[2 * i + 1]) for i in range(n)]
        self.procs = []
        cluster = ",".join(f"{m}=http://127.0.0.1:{p}" for m, _, p in self.members)
        for name, client, peer in self.members:
            log = open(os.path.join(tmp, f"etcd-{name}.log"), "w")
            self.procs.append(subprocess.Popen(
                ["etcd", "--name", name, "--data-dir", os.path.join(tmp, f"etcd-{name}"),
                 "--listen-client-urls", f"http://127.0.0.1:{client}",
                 "--advertise-client-urls", f"http://127.0.0.1:{client}",
                 "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                 "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                 "--initial-cluster", cluster, "--initial-cluster-state", "new",
                 "--initial-cluster-token", "bench", "--heartbeat-interval", "50",
                 "--election-timeout", "500", "--log-level", "error"],
                stdout=subprocess.DEVNULL, stderr=log))
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if b'"true"' in urllib.request.urlopen(f"{self.endpoints()[0]}/health", timeout=1).read():
                    return
            except OSError:
                pass
            time.sleep(0.2)
        sys.exit("etcd did not become healthy in 30 s")

    def endpoints(self):
        return [f"http://127.0.0.1:{c}" for _, c, _ in self.members]

    def metric(self, name):
        text = urllib.request.urlopen(f"{self.endpoints()[0]}/metrics", timeout=5).read().decode()
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return float("nan")

    def stop(self):
        for p in self.procs:
            p.kill()
            p.wait()


def write_instance(tmp, name, services, cluster=None, source=None):
    d = os.path.join(tmp, name)
    os.makedirs(d, exist_ok=True)
    port = free_port()
    text = f"""# generated by bench/cluster.py
[server]
dns_listen = ["127.0.0.1:{port}"]
admin_listen = "unix:state/admin.sock"
page_listen = ["127.0.0.1:0"]
zones_dir = "../zones"
udp_workers = 1
{f'probe_source = "{source}"' if source else ''}
{services}
"""
    if cluster:
        text += "\n[cluster]\n" + "\n".join(f"{k} = {json.dumps(v)}" for k, v in cluster.items()) + "\n"
    with open(os.path.join(d, "detour.toml"), "w") as f:
        f.write(text)
    return d, port


def start(binary, d, timeout=60):
    log = open(os.path.join(d, "detour.log"), "w")
    p = subprocess.Popen([binary, "run", "--config", os.path.join(d, "detour.toml")],
                         cwd=d, stdout=subprocess.DEVNULL, stderr=log,
                         env=dict(os.environ, RUST_LOG="info"))
    deadline = time.time() + timeout
    while time.time() < deadline:
        with open(os.path.join(d, "detour.log")) as f:
            if " ready" in f.read():
                return p
        if p.poll() is not None:
            sys.exit(f"detour in {d} exited at start; see {d}/detour.log")
        time.sleep(0.05)
    sys.exit(f"detour in {d} not ready in {timeout}s")


def wait_all(ports, want, t0, limit=30.0):
    """Seconds from t0 until each port answers `want` for mls.example.test (None: never)."""
    done = {}
    while len(done) < len(ports) and time.time() - t0 < limit:
        for p in ports:
            if p not in done and query_a(p, "mls.example.test") == [want]:
                done[p] = time.time() - t0
        time.sleep(0.01)
    return [done.get(p) for p in ports]


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/release/detour"))
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--qps-secs", type=int, default=10)
    ap.add_argument("--qps-runs", type=int, default=3)
    ap.add_argument("--checks", type=int, default=1000)
    ap.add_argument("--churn-secs", type=int, default=30)
    ap.add_argument("--skip", default="")
    a = ap.parse_args()
    if not (1 <= a.reps <= 100 and 1 <= a.qps_secs <= 60 and 1 <= a.qps_runs <= 10
            and 1 <= a.checks <= 5000 and 5 <= a.churn_secs <= 300):
        sys.exit("out of range: --reps 1..100, --qps-secs 1..60, --qps-runs 1..10, "
                 "--checks 1..5000, --churn-secs 5..300")
    if not shutil.which("etcd"):
        sys.exit("etcd is needed (apt-get install -y etcd-server)")
    skip = set(a.skip.split(","))
    tmp = tempfile.mkdtemp(prefix="detour-cluster-bench.")
    binary = os.path.join(tmp, "detour")
    shutil.copy(a.bin, binary)  # a concurrent cargo build cannot swap it mid-run
    procs, etcd = [], Etcd(tmp)
    try:
        os.makedirs(os.path.join(tmp, "zones"))
        with open(os.path.join(tmp, "zones", "bench.test.toml"), "w") as f:
            f.write(f"""origin = "example.test."
soa = {{ mname = "ns1.example.test.", rname = "h.example.test.", minimum = 30 }}
ns = ["ns1.example.test."]
records = [ {{ name = "ns1", type = "A", value = "127.0.0.1" }} ]
[[dynamic]]
name = "mls"
type = "A"
ttl = 1
answers = [ {{ if_up = "mls", values = ["{UP}"] }} ]
otherwise = ["{DOWN}"]
""")
        backend = Backend(free_port())
        backend.start()
        svc = f"""[services.mls]
check = {{ type = "http", url = "http://127.0.0.1:{backend.port}/", interval = "1s", timeout = "500ms", rise = 2, fall = 2, confirm_interval = "250ms" }}
"""
        ports = []
        for i in range(3):
            d, port = write_instance(tmp, f"i{i}", svc, {
                "instance": f"i{i}", "etcd": etcd.endpoints(), "prefix": "/bench/",
                "lease_ttl": "3s"}, source=f"127.0.0.{i + 2}")
            procs.append(start(binary, d))
            ports.append(port)
        d, lone = write_instance(tmp, "lone", svc)
        procs.append(start(binary, d))
        print(f"# bench/cluster.py {time.strftime('%Y-%m-%dT%H:%M:%S%z')}  binary {a.bin}")
        print(f"# load before: {open('/proc/loadavg').read().split()[:3]}")

        if "failover" not in skip:
            wait_all(ports + [lone], UP, time.time())
            rows = []
            print("\nrep  cluster_down_s  lone_down_s  cluster_up_s  lone_up_s")
            for rep in range(1, a.reps + 1):
                time.sleep(1 + (rep % 3) * 0.7)
                t0 = time.time()
                backend.stop()
                down = wait_all(ports + [lone], DOWN, t0)
                time.sleep(1 + (rep % 2) * 0.9)
                t1 = time.time()
                backend.start()
                up = wait_all(ports + [lone], UP, t1)
                cd = None if None in down[:3] else max(down[:3])
                cu = None if None in up[:3] else max(up[:3])
                rows.append((cd, down[3], cu, up[3]))
                f = lambda x: "NA" if x is None else f"{x:.3f}"  # noqa: E731
                print(f"{rep:<4} {f(cd):>14} {f(down[3]):>12} {f(cu):>13} {f(up[3]):>10}")
            cols = list(zip(*rows))
            cdm, ldm, cum, lum = (med(c) for c in cols)
            print(f"\nfailover (all three instances vs the lone one, same kills): "
                  f"down median {cdm:.3f} s vs {ldm:.3f} s (+{cdm - ldm:.3f} s); "
                  f"up median {cum:.3f} s vs {lum:.3f} s (+{cum - lum:.3f} s)")

        if "qps" not in skip:
            if not shutil.which("dnsperf"):
                print("\nqps: skipped (dnsperf not installed: apt-get install -y dnsperf)")
            else:
                qfile = os.path.join(tmp, "queries.txt")
                with open(qfile, "w") as f:
                    f.write("mls.example.test A\nns1.example.test A\nexample.test SOA\n")

                def qps(port):
                    out = subprocess.run(
                        ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", qfile,
                         "-l", str(a.qps_secs), "-c", "4", "-q", "200"],
                        capture_output=True, text=True, timeout=a.qps_secs + 30).stdout
                    for line in out.splitlines():
                        if "Queries per second" in line:
                            return float(line.split()[-1])
                    return float("nan")

                cq, lq = [], []
                for _ in range(a.qps_runs):
                    cq.append(qps(ports[0]))
                    lq.append(qps(lone))
                print(f"\nqps (one UDP worker each, {a.qps_secs}s runs, alternating): cluster "
                      f"{[round(x) for x in cq]} lone {[round(x) for x in lq]}; medians "
                      f"{med(cq):.0f} vs {med(lq):.0f}: ratio {med(cq) / med(lq):.3f}")

        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(timeout=15)
        procs = []

        if "churn" not in skip:
            listeners = []
            services = []
            for i in range(a.checks):
                s = socket.socket()
                s.bind(("127.0.0.1", 0))
                s.listen(1024)
                listeners.append(s)
                services.append(f"[services.s{i}]\ncheck = {{ type = \"tcp\", address = "
                                f"\"127.0.0.1:{s.getsockname()[1]}\", interval = \"1s\", timeout = \"500ms\" }}\n")

            def drain():  # accept and close, so that backlogs never fill
                end = time.time() + a.churn_secs + 180
                while time.time() < end:
                    for s in listeners:
                        s.setblocking(False)
                        try:
                            while True:
                                s.accept()[0].close()
                        except OSError:
                            pass
                    time.sleep(0.05)

            threading.Thread(target=drain, daemon=True).start()
            # the zone's dynamic record follows "mls": one of the checks stands for it
            services[0] = services[0].replace("[services.s0]", "[services.mls]")
            for i in range(3):
                d, _ = write_instance(tmp, f"c{i}", "\n".join(services), {
                    "instance": f"c{i}", "etcd": etcd.endpoints(), "prefix": "/churn/",
                    "lease_ttl": "10s"})
                procs.append(start(binary, d, timeout=120))
            time.sleep(10)  # first verdicts written; settle
            r0, p0, t0 = (etcd.metric("etcd_debugging_mvcc_current_revision"),
                          etcd.metric("etcd_mvcc_put_total"), time.time())
            time.sleep(a.churn_secs)
            r1, p1, t1 = (etcd.metric("etcd_debugging_mvcc_current_revision"),
                          etcd.metric("etcd_mvcc_put_total"), time.time())
            dt = t1 - t0
            print(f"\nchurn ({a.checks} checks at 1 s, 3 instances, {dt:.0f} s, all passing): "
                  f"{(r1 - r0) / dt:.2f} revisions/s, {(p1 - p0) / dt:.2f} keys put/s "
                  f"(for the cluster; per instance {(p1 - p0) / dt / 3:.2f})")
        print(f"\n# load after: {open('/proc/loadavg').read().split()[:3]}")
    finally:
        for p in procs:
            p.kill()
        etcd.stop()
        if os.environ.get("KEEP"):
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
