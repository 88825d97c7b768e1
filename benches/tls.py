#!/usr/bin/env python3
"""Runs the TLS benchmark of issue #12 and prints the tables of the "TLS" section of
benches/RESULTS.md.

Servers, each a row, all with the same ECDSA P-256 certificate (made here with openssl, in a
temporary folder) and TLS 1.3 (what rustls and OpenSSL agree on by default):

- `netecho serve --tls --multiplex --io uring|epoll --cert C --key K -q` (release), on both
  backends; with NETECHO_BENCH_BEFORE=PATH also that (earlier) binary's, for an A/B run;
- `socat -b 16384 OPENSSL-LISTEN:PORT,bind=127.0.0.1,fork,reuseaddr,backlog=1024,nodelay,
  cert=C,key=K,verify=0 PIPE` (-b: socat's transfer buffer, 8 KiB by default, raised to one TLS
  record; nodelay: without it, the server's echo waits behind its session tickets for the
  client's delayed ACK, 40 ms per new connection, and the handshake case measures that timer);
- `examples/tokio_rustls_echo --cert C --key K` (release, `--features reference`).

The load is `netecho bench --tls --pin SHA256 --json` (release), pinned to CPU 1; each server
is pinned to CPU 0. Cases:

- bulk: 1 connection, 64 KiB messages, 4 in flight: MiB/s and server CPU per MiB;
- handshakes: `--reconnect 1 --no-resumption` over 16 connections: full handshakes per second
  and server CPU per handshake;
- hold: 10,000 TLS clients that handshake, then send one small message every 100 s (`--rate 100`
  in total): the server's peak RSS (VmHWM), which must stay under 128 MiB for netecho. socat is
  left out: a process per client.

Each case runs RUNS times (default 3, env NETECHO_BENCH_RUNS), the servers interleaved; medians
are printed, each run's value in brackets. Server CPU is utime+stime from /proc/PID/stat before
and after (plus reaped children for socat). A server whose binary is missing (netecho built
without `serve --tls`, say) is reported as "not run" and the others go on; env
NETECHO_TLS_SERVERS=socat,tokio picks the rows to run.

Run it through benches/tls.sh, which builds the release binaries first.
"""

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import (CLK_TCK, LOAD_CPU, NETECHO, RELEASE, SERVER_CPU, START_TIMEOUT,  # noqa: E402
                 descendants, free_port, spread, wait_connectable)

RUNS = int(os.environ.get("NETECHO_BENCH_RUNS", "3"))
HOLD = int(os.environ.get("NETECHO_BENCH_HOLD", "10000"))
TOKIO_RUSTLS = os.path.join(RELEASE, "examples", "tokio_rustls_echo")
# Plain TCP, 10k held by `serve --multiplex` (benches/RESULTS.md, the comparison): the part of
# the TLS figure that is not TLS.
PLAIN_HOLD_MIB = 4.8

# name -> (label, command line for a port and the certificate files, prints "listening on")
def netecho_tls(binary, io):
    """`netecho serve --tls --multiplex --io IO` of `binary`, for a port and the certificate."""
    return lambda port, c, k: [binary, "serve", "--tls", "--multiplex", "--io", io, "--cert", c,
                               "--key", k, "-q", "--port", str(port)]


SERVERS = {
    "netecho": ("`netecho serve --tls --multiplex` (io_uring)", netecho_tls(NETECHO, "uring"),
                True),
    "netecho-epoll": ("`netecho serve --tls --multiplex --io epoll`",
                      netecho_tls(NETECHO, "epoll"), True),
    "socat": ("socat OPENSSL-LISTEN (-b 16384, fork)",
              lambda port, c, k: ["socat", "-b", "16384",
                                  f"OPENSSL-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr,"
                                  f"backlog=1024,nodelay,cert={c},key={k},verify=0", "PIPE"],
              False),
    "tokio": ("tokio-rustls reference",
              lambda port, c, k: [TOKIO_RUSTLS, "--cert", c, "--key", k, f"127.0.0.1:{port}"],
              True),
}
# NETECHO_BENCH_BEFORE=PATH: an earlier commit's release binary runs beside this one, interleaved
# (before issue #20, `--tls` ran on epoll whatever `--io` said).
BEFORE = os.environ.get("NETECHO_BENCH_BEFORE")
if BEFORE:
    SERVERS["netecho-before"] = ("`netecho serve --tls --multiplex --io epoll`, before",
                                 netecho_tls(BEFORE, "epoll"), True)
ALL = list(SERVERS)

# (key, title, `netecho bench` arguments, servers, why the others are left out)
CASES = [
    ("bulk", "bulk, 1 conn × 64 KiB, 4 in flight",
     ["-c", 1, "-s", "64KiB", "--pipeline", 4, "-d", 5], ALL, {}),
    ("handshake", "full handshakes, 16 conns, a new one per message",
     ["-c", 16, "-s", 64, "--reconnect", 1, "--no-resumption", "-d", 5], ALL, {}),
    ("hold", f"{HOLD // 1000}k TLS clients held, 1 msg per 100 s each",
     ["-c", HOLD, "--rate", HOLD // 100, "-s", 32, "-d", 10],
     [name for name in ALL if name != "socat"],
     {"socat": "left out (a process per client)"}),
]

# NETECHO_BENCH_CASES=bulk,handshake: only those cases, for a quicker look at one figure.
ONLY = os.environ.get("NETECHO_BENCH_CASES")
if ONLY:
    CASES = [case for case in CASES if case[0] in ONLY.split(",")]


def make_certificate(folder):
    """A self-signed ECDSA P-256 certificate for localhost/127.0.0.1; its SHA-256 fingerprint."""
    cert, key = os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec",
                    "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key,
                    "-out", cert, "-days", "30", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    out = subprocess.run(["openssl", "x509", "-in", cert, "-noout", "-fingerprint", "-sha256"],
                         check=True, capture_output=True, text=True).stdout
    return cert, key, out.strip().split("=", 1)[1]


class Server:
    """One TLS echo server, pinned to SERVER_CPU."""

    def __init__(self, name, cert, key):
        _, command, prints = SERVERS[name]
        self.name = name
        self.port = free_port()
        self.proc = subprocess.Popen(
            ["taskset", "-c", SERVER_CPU] + command(self.port, cert, key),
            stdout=subprocess.PIPE if prints else subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, text=True)
        if prints:
            first = self.proc.stdout.readline()
            if not first.startswith("listening on"):
                self.stop()
                raise RuntimeError(f"{name}: unexpected first line {first!r}")
            # Keep draining stdout so the server never blocks on it.
            subprocess.Popen(["cat"], stdin=self.proc.stdout, stdout=subprocess.DEVNULL)
        wait_connectable(self.port, time.monotonic() + START_TIMEOUT)
        time.sleep(0.2)  # the probe connection above must be gone before measuring

    def peak_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmHWM")

    def cpu_seconds(self):
        """CPU seconds of all threads, with those of reaped children (socat)."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            utime, stime, cutime, cstime = (int(x) for x in
                                            f.read().rsplit(")", 1)[1].split()[11:15])
        return (utime + stime + cutime + cstime) / CLK_TCK

    def wait_children_reaped(self, timeout=5.0):
        deadline = time.monotonic() + timeout
        while len(descendants(self.proc.pid)) > 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.05)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def bench(server, pin, args, duration):
    cmd = ["taskset", "-c", LOAD_CPU, NETECHO, "bench", "--host", "127.0.0.1",
           "--port", str(server.port), "--tls", "--pin", pin, "--json"]
    out = subprocess.run(cmd + [str(a) for a in args], capture_output=True, text=True,
                         timeout=duration + 120)
    # Exit status 1 means errors or lost replies: they are in the JSON, and counted.
    if out.returncode not in (0, 1) or not out.stdout.strip():
        raise RuntimeError(f"bench {args} failed ({out.returncode}): {out.stderr.strip()}")
    return json.loads(out.stdout)


def measure(name, cert, key, pin, args):
    duration = float(args[args.index("-d") + 1])
    server = Server(name, cert, key)
    try:
        before = server.cpu_seconds()
        r = bench(server, pin, args, duration)
        if name == "socat":
            server.wait_children_reaped()
        cpu = server.cpu_seconds() - before
        peak = server.peak_kib() if name != "socat" else 0
    finally:
        server.stop()
    mib = r["bytes"] / (1024 * 1024)
    # Handshakes made while the load ran: the full ones per second, times the seconds.
    full = r["full_handshakes_per_sec"] * r["elapsed_s"]
    errors = sum(r["errors"].values()) + r["lost"] + r["failed_connections"]
    return {"mib_per_sec": r["mib_per_sec"], "msgs_per_sec": r["msgs_per_sec"],
            "hs_per_sec": r["full_handshakes_per_sec"],
            "cpu_ms_per_mib": cpu * 1e3 / mib if mib else 0.0,
            "cpu_us_per_hs": cpu * 1e6 / full if full else 0.0,
            "hs_p50_us": r["handshake_latency_us"]["p50"],
            "hs_p99_us": r["handshake_latency_us"]["p99"],
            "p50_us": r["latency_us"]["p50"], "p99_us": r["latency_us"]["p99"],
            "resumed": r["resumed"], "handshakes": r["handshakes"],
            "peak_mib": peak / 1024, "errors": errors}


def median(runs, key):
    return statistics.median(r[key] for r in runs)


def cell(runs, key, fmt):
    return f"{fmt.format(median(runs, key))} ({spread(runs, key, fmt)})"


def main():
    chosen = os.environ.get("NETECHO_TLS_SERVERS")
    chosen = chosen.split(",") if chosen else ALL
    results, not_run = {}, {}
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as folder:
        cert, key, pin = make_certificate(folder)
        for case, _, args, who, _ in CASES:
            for run in range(RUNS):
                for name in who:
                    if name not in chosen or name in not_run:
                        continue
                    try:
                        r = measure(name, cert, key, pin, args)
                    except (OSError, RuntimeError) as err:
                        not_run[name] = str(err)
                        print(f"# {name}: not run: {err}", file=sys.stderr, flush=True)
                        continue
                    results.setdefault((case, name), []).append(r)
                    print(f"# {case} {name} run {run + 1}: "
                          + " ".join(f"{k}={v:.2f}" for k, v in r.items()),
                          file=sys.stderr, flush=True)
    print(f"# all runs took {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)

    p = print
    p("Cases (`netecho bench --tls --pin SHA256`, pinned to CPU 1):\n")
    for _, title, args, _, _ in CASES:
        p(f"- {title}: `netecho bench --tls {' '.join(str(a) for a in args)}`")
    p(f"\nMedians of {RUNS} runs; in brackets, each run's value in run order.\n")

    def missing(case, name, left_out):
        if name in left_out:
            return left_out[name]
        return "not run" + (f" ({not_run[name][:60]})" if name in not_run else "")

    p("| bulk: server | MiB/s | server CPU ms/MiB | msg p50 µs | msg p99 µs | errors |")
    p("|---|---|---|---|---|---|")
    for name in ALL:
        rs = results.get(("bulk", name))
        if not rs:
            p(f"| {SERVERS[name][0]} | {missing('bulk', name, {})} | | | | |")
            continue
        p(f"| {SERVERS[name][0]} | {cell(rs, 'mib_per_sec', '{:.0f}')} "
          f"| {cell(rs, 'cpu_ms_per_mib', '{:.2f}')} | {median(rs, 'p50_us'):.0f} "
          f"| {median(rs, 'p99_us'):.0f} | {median(rs, 'errors'):.0f} |")
    p("\n| handshakes: server | full handshakes/s | server CPU µs/handshake "
      "| handshake p50 µs | handshake p99 µs | resumed | errors |")
    p("|---|---|---|---|---|---|---|")
    for name in ALL:
        rs = results.get(("handshake", name))
        if not rs:
            p(f"| {SERVERS[name][0]} | {missing('handshake', name, {})} | | | | | |")
            continue
        p(f"| {SERVERS[name][0]} | {cell(rs, 'hs_per_sec', '{:.0f}')} "
          f"| {cell(rs, 'cpu_us_per_hs', '{:.0f}')} | {median(rs, 'hs_p50_us'):.0f} "
          f"| {median(rs, 'hs_p99_us'):.0f} | {median(rs, 'resumed'):.0f} "
          f"| {median(rs, 'errors'):.0f} |")
    hold_left_out = CASES[2][4]
    p(f"\n| {HOLD // 1000}k held: server | peak RSS (VmHWM) MiB | per client KiB "
      "| TLS per client KiB (minus plain TCP) | handshake p99 ms | errors |")
    p("|---|---|---|---|---|---|")
    for name in ALL:
        rs = results.get(("hold", name))
        if not rs:
            p(f"| {SERVERS[name][0]} | {missing('hold', name, hold_left_out)} | | | | |")
            continue
        peak = median(rs, "peak_mib")
        p(f"| {SERVERS[name][0]} | {cell(rs, 'peak_mib', '{:.1f}')} "
          f"| {peak * 1024 / HOLD:.1f} | {(peak - PLAIN_HOLD_MIB) * 1024 / HOLD:.1f} "
          f"| {median(rs, 'hs_p99_us') / 1000:.1f} | {median(rs, 'errors'):.0f} |")

    def m(case, name, key):
        rs = results.get((case, name))
        return median(rs, key) if rs else None

    p("\nAgainst the targets of issue #12 (`netecho serve --tls --multiplex`)\n")
    p("| target | result | met? |")
    p("|---|---|---|")

    def row(target, ours, theirs, unit, ok):
        if ours is None or theirs is None:
            p(f"| {target} | not run | |")
            return
        ratio = ours / theirs if theirs else float("inf")
        p(f"| {target} | {ours:.0f} vs {theirs:.0f} {unit} ({ratio:.2f}×) "
          f"| {'yes' if ok(ratio) else '**no**'} |")

    row("bulk ≥ 1.5 × socat", m("bulk", "netecho", "mib_per_sec"),
        m("bulk", "socat", "mib_per_sec"), "MiB/s", lambda r: r >= 1.5)
    row("bulk ≥ 1.0 × tokio-rustls", m("bulk", "netecho", "mib_per_sec"),
        m("bulk", "tokio", "mib_per_sec"), "MiB/s", lambda r: r >= 1.0)
    row("full handshakes/s ≥ 1.0 × tokio-rustls", m("handshake", "netecho", "hs_per_sec"),
        m("handshake", "tokio", "hs_per_sec"), "/s", lambda r: r >= 1.0)
    peak = m("hold", "netecho", "peak_mib")
    if peak is None:
        p(f"| {HOLD // 1000}k TLS clients held: VmHWM < 128 MiB | not run | |")
    else:
        errors = m("hold", "netecho", "errors")
        tokio = m("hold", "tokio", "peak_mib")
        p(f"| {HOLD // 1000}k TLS clients held: VmHWM < 128 MiB, zero errors | {peak:.1f} MiB "
          f"(tokio-rustls {tokio if tokio is None else f'{tokio:.1f}'}), {errors:.0f} errors "
          f"| {'yes' if peak < 128 and errors == 0 else '**no**'} |")


if __name__ == "__main__":
    main()
