#!/usr/bin/env python3
"""Runs the benchmark of issue #3 and prints the results table of benches/RESULTS.md.

Servers: `netecho serve --multiplex -q`, the tokio reference (examples/tokio_echo.rs) and
`socat TCP-LISTEN:PORT,fork,reuseaddr,backlog=1024 PIPE`; iperf3 gives the loopback ceiling of the
bulk case. The server runs pinned to CPU 0 and the load client (examples `load`, benches/load.rs)
to CPU 1. Each case runs RUNS times (default 3, env NETECHO_BENCH_RUNS) and the medians are
printed. Everything is on 127.0.0.1 and bounded in time; a full run takes about 5 minutes.

Run it through benches/run.sh, which builds the release binaries first.
"""

import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RELEASE = os.path.join(ROOT, "target", "release")
LOAD = os.path.join(RELEASE, "examples", "load")
RUNS = int(os.environ.get("NETECHO_BENCH_RUNS", "3"))
# Bulk runs are short (well under a second each) and the noisiest: more of them.
BULK_RUNS = RUNS + 2
HOLD_CONNECTIONS = int(os.environ.get("NETECHO_BENCH_HOLD", "10000"))
HOLD_SECONDS = 15
RR_CONNECTIONS, RR_SECONDS, RR_SIZE = 100, 5, 64
BULK_BYTES = 1 << 30
STALL_SECONDS = 10
CLK_TCK = os.sysconf("SC_CLK_TCK")
SERVER_CPU, LOAD_CPU = "0", "1"
START_TIMEOUT = 10.0

SERVERS = {
    "netecho": lambda port: [os.path.join(RELEASE, "netecho"), "serve", "--multiplex", "-q",
                             "--port", str(port)],
    "tokio": lambda port: [os.path.join(RELEASE, "examples", "tokio_echo"), f"127.0.0.1:{port}"],
    "socat": lambda port: ["socat", f"TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr,backlog=1024",
                           "PIPE"],
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_connectable(port, deadline):
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


class Server:
    """One server process, pinned to SERVER_CPU."""

    def __init__(self, name):
        self.name = name
        self.port = free_port()
        self.proc = subprocess.Popen(
            ["taskset", "-c", SERVER_CPU] + SERVERS[name](self.port),
            stdout=subprocess.PIPE if name != "socat" else subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, text=True)
        if name != "socat":
            first = self.proc.stdout.readline()
            if not first.startswith("listening on"):
                raise RuntimeError(f"{name}: unexpected first line {first!r}")
            # Keep draining stdout so the server never blocks on it.
            subprocess.Popen(["cat"], stdin=self.proc.stdout, stdout=subprocess.DEVNULL)
        wait_connectable(self.port, time.monotonic() + START_TIMEOUT)
        # The probe connection above must be gone before measuring.
        time.sleep(0.2)
        self.addr = f"127.0.0.1:{self.port}"

    def status_kb(self, field):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise RuntimeError(f"no {field}")

    def cpu_seconds(self):
        """(user, system) CPU seconds, with those of reaped children (socat forks per client)."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = [int(x) for x in f.read().rsplit(")", 1)[1].split()[11:15]]
        utime, stime, cutime, cstime = fields
        return (utime + cutime) / CLK_TCK, (stime + cstime) / CLK_TCK

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def load(*args, timeout=120):
    out = subprocess.run(["taskset", "-c", LOAD_CPU, LOAD] + [str(a) for a in args],
                         capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"load {args[0]} failed: {out.stderr.strip()}")
    return dict(kv.split("=", 1) for kv in out.stdout.split())


def hold(name):
    server = Server(name)
    try:
        r = load("hold", server.addr, HOLD_CONNECTIONS, HOLD_SECONDS, 32)
        hwm = server.status_kb("VmHWM")
    finally:
        server.stop()
    return {"hwm_mib": hwm / 1024, "errors": int(r["errors"]) + HOLD_CONNECTIONS - int(r["alive"]),
            "late": int(r["late"]), "msgs": int(r["messages"])}


def rr(name):
    server = Server(name)
    try:
        before = server.cpu_seconds()
        r = load("rr", server.addr, RR_CONNECTIONS, RR_SECONDS, RR_SIZE)
        if name == "socat":
            time.sleep(1.0)  # its per-client children exit and are reaped into cutime/cstime
        after = server.cpu_seconds()
    finally:
        server.stop()
    msgs = int(r["messages"])
    user, system = ((b - a) / msgs * 1e6 for a, b in zip(before, after))
    return {"msgs_per_sec": float(r["msgs_per_sec"]), "cpu_us_per_msg": user + system,
            "user_us": user, "sys_us": system, "errors": int(r["errors"])}


def bulk(name):
    server = Server(name)
    try:
        before = sum(server.cpu_seconds())
        r = load("bulk", server.addr, BULK_BYTES)
        if name == "socat":
            time.sleep(1.0)  # its child exits and is reaped into cutime/cstime
        cpu = sum(server.cpu_seconds()) - before
    finally:
        server.stop()
    return {"mib_per_sec": float(r["mib_per_sec"]), "cpu_per_gib": cpu / (BULK_BYTES / (1 << 30))}


def stall(name):
    server = Server(name)
    try:
        idle = server.status_kb("VmRSS")
        r = load("stall", server.addr, BULK_BYTES, STALL_SECONDS)
        peak = server.status_kb("VmHWM")
    finally:
        server.stop()
    return {"idle_kib": idle, "peak_kib": peak, "growth_kib": peak - idle, "sent": int(r["sent"])}


def iperf3(bidir):
    port = free_port()
    srv = subprocess.Popen(["taskset", "-c", SERVER_CPU, "iperf3", "-s", "-1", "-p", str(port)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        args = ["taskset", "-c", LOAD_CPU, "iperf3", "-c", "127.0.0.1", "-p", str(port), "-t", "3",
                "-J"] + (["--bidir"] if bidir else [])
        out = subprocess.run(args, capture_output=True, text=True, timeout=30)
        import json
        end = json.loads(out.stdout)["end"]
        # Per direction, as the echo moves each byte both ways.
        mib = end["sum_received"]["bits_per_second"] / 8 / (1 << 20)
        return {"mib_per_sec": mib}
    finally:
        srv.wait(timeout=10)


def median(runs, key):
    return statistics.median(r[key] for r in runs)


def spread(runs, key, fmt):
    return "/".join(fmt.format(r[key]) for r in runs)


def main():
    have_socat = shutil.which("socat") is not None
    have_iperf3 = shutil.which("iperf3") is not None
    names = ["netecho", "tokio"] + (["socat"] if have_socat else [])
    results = {}
    cases = [("hold", hold, ["netecho", "tokio"]), ("rr", rr, names), ("bulk", bulk, names),
             ("stall", stall, ["netecho", "tokio"])]
    for case, fn, who in cases:
        for run in range(BULK_RUNS if case == "bulk" else RUNS):
            # Interleaved, so that background noise hits every server alike.
            for name in who:
                r = fn(name)
                results.setdefault((case, name), []).append(r)
                print(f"# {case} {name} run {run + 1}: {r}", file=sys.stderr, flush=True)
    if have_iperf3:
        for bidir in (False, True):
            for _ in range(RUNS):
                r = iperf3(bidir)
                results.setdefault(("iperf3", "bidir" if bidir else "one-way"), []).append(r)
                print(f"# iperf3 bidir={bidir}: {r}", file=sys.stderr, flush=True)

    p = print
    p(f"Medians of {RUNS} runs (each run's values after the median, in run order).\n")
    p(f"(a) {HOLD_CONNECTIONS} connections held {HOLD_SECONDS} s, 32 bytes each about once a second\n")
    p("| server | peak RSS (VmHWM) MiB | errors | late echoes | messages |")
    p("|---|---|---|---|---|")
    for name in ["netecho", "tokio"]:
        rs = results[("hold", name)]
        p(f"| {name} | {median(rs, 'hwm_mib'):.1f} ({spread(rs, 'hwm_mib', '{:.1f}')}) | "
          f"{median(rs, 'errors'):.0f} | {median(rs, 'late'):.0f} | {median(rs, 'msgs'):.0f} |")
    p(f"\n(b) request/response, {RR_CONNECTIONS} connections x {RR_SIZE}-byte messages, "
      f"{RR_SECONDS} s\n")
    p("| server | messages/s | server CPU µs per message | of which user | of which kernel "
      "| errors |")
    p("|---|---|---|---|---|---|")
    for name in names:
        rs = results[("rr", name)]
        p(f"| {name} | {median(rs, 'msgs_per_sec'):.0f} ({spread(rs, 'msgs_per_sec', '{:.0f}')}) | "
          f"{median(rs, 'cpu_us_per_msg'):.2f} ({spread(rs, 'cpu_us_per_msg', '{:.2f}')}) | "
          f"{median(rs, 'user_us'):.2f} | {median(rs, 'sys_us'):.2f} | "
          f"{median(rs, 'errors'):.0f} |")
    p("\n(c) bulk: one connection streams 1 GiB and reads it back at the same time\n")
    p(f"Medians of {BULK_RUNS} runs.\n")
    p("| server | MiB/s | server CPU s per GiB |")
    p("|---|---|---|")
    for name in names:
        rs = results[("bulk", name)]
        p(f"| {name} | {median(rs, 'mib_per_sec'):.0f} ({spread(rs, 'mib_per_sec', '{:.0f}')}) | "
          f"{median(rs, 'cpu_per_gib'):.2f} ({spread(rs, 'cpu_per_gib', '{:.2f}')}) |")
    for mode in ("one-way", "bidir"):
        if ("iperf3", mode) in results:
            rs = results[("iperf3", mode)]
            p(f"| iperf3 {mode} (per direction), loopback ceiling | "
              f"{median(rs, 'mib_per_sec'):.0f} ({spread(rs, 'mib_per_sec', '{:.0f}')}) | |")
    p(f"\n(d) backpressure: up to 1 GiB sent for {STALL_SECONDS} s, nothing read\n")
    p("| server | idle RSS KiB | peak (VmHWM) KiB | growth KiB | bytes the client got out |")
    p("|---|---|---|---|---|")
    for name in ["netecho", "tokio"]:
        rs = results[("stall", name)]
        p(f"| {name} | {median(rs, 'idle_kib'):.0f} | {median(rs, 'peak_kib'):.0f} | "
          f"{median(rs, 'growth_kib'):.0f} ({spread(rs, 'growth_kib', '{:.0f}')}) | "
          f"{median(rs, 'sent'):.0f} |")


if __name__ == "__main__":
    main()
