#!/usr/bin/env python3
"""Runs the comparison benchmark and prints the tables of benches/RESULTS.md.

Servers: `netecho serve` (iterative: one client at a time), `netecho serve --multiplex --io epoll`,
`netecho serve --multiplex` (io_uring, the default where the kernel allows it: issue #13),
`netecho serve --multiplex --workers 2`, the tokio reference (examples/tokio_echo.rs) and
`socat TCP-LISTEN:PORT,bind=127.0.0.1,fork,reuseaddr,backlog=1024 PIPE`.

The load is `netecho bench --json` in every case but backpressure, which needs a client that
never reads (benches/load.rs, the example `load`). Each server runs pinned to CPU 0 and the load
to CPU 1. Each case runs RUNS times (default 3, env NETECHO_BENCH_RUNS), the servers
interleaved so that background noise hits them alike; medians are printed, with each run's
values in brackets. Server CPU is utime+stime from /proc/PID/stat (all threads, plus reaped
children for socat); peak memory is VmHWM from /proc/PID/status (for socat, which forks a
process per client, the largest sampled sum of Pss over its processes). Everything is on
127.0.0.1 and bounded in time; a full run takes about 6 minutes.

Run it through benches/run.sh, which builds the release binaries first. With
NETECHO_BENCH_BEFORE=PATH (the release binary of an earlier commit), that binary's servers run
beside this one's in the same run, interleaved: an A/B comparison of a change.
"""

import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RELEASE = os.path.join(ROOT, "target", "release")
NETECHO = os.path.join(RELEASE, "netecho")
LOAD = os.path.join(RELEASE, "examples", "load")
RUNS = int(os.environ.get("NETECHO_BENCH_RUNS", "3"))
HOLD_CONNECTIONS = int(os.environ.get("NETECHO_BENCH_HOLD", "10000"))
STALL_BYTES, STALL_SECONDS = 1 << 30, 5
CLK_TCK = os.sysconf("SC_CLK_TCK")
SERVER_CPU, LOAD_CPU = "0", "1"
START_TIMEOUT = 10.0

# name -> (label in the tables, command line for a port)
SERVERS = {
    "serve": ("`netecho serve` (iterative)",
              lambda port: [NETECHO, "serve", "-q", "--port", str(port)]),
    "multiplex": ("`netecho serve --multiplex --io epoll`",
                  lambda port: [NETECHO, "serve", "--multiplex", "--io", "epoll", "-q",
                                "--port", str(port)]),
    "uring": ("`netecho serve --multiplex` (io_uring)",
              lambda port: [NETECHO, "serve", "--multiplex", "--io", "uring", "-q",
                            "--port", str(port)]),
    "workers2": ("`netecho serve --multiplex --workers 2`",
                 lambda port: [NETECHO, "serve", "--multiplex", "--workers", "2", "-q",
                               "--port", str(port)]),
    "tokio": ("tokio reference",
              lambda port: [os.path.join(RELEASE, "examples", "tokio_echo"),
                            f"127.0.0.1:{port}"]),
    "socat": ("socat",
              lambda port: ["socat",
                            f"TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr,backlog=1024",
                            "PIPE"]),
}
ALL = list(SERVERS)
MANY = ["multiplex", "uring", "workers2", "tokio", "socat"]  # the iterative server serves one at a time

# (key, short name, `netecho bench` arguments, servers, why the others are left out)
CASES = [
    ("hold", f"{HOLD_CONNECTIONS // 1000}k held, 1 msg/s each",
     ["-c", HOLD_CONNECTIONS, "--rate", HOLD_CONNECTIONS, "-s", 32, "-d", 15],
     ["multiplex", "uring", "workers2", "tokio"],
     {"serve": "n/a (one client at a time)", "socat": "left out (a process per client)"}),
    ("rr100", "req/resp, 100 conns × 64 B",
     ["-c", 100, "-s", 64, "-d", 5], MANY, {"serve": "n/a (one client at a time)"}),
    ("rr1", "req/resp, 1 conn × 64 B",
     ["-c", 1, "-s", 64, "-d", 3], ALL, {}),
    ("bulk", "bulk, 1 conn × 1 MiB, 4 in flight",
     ["-c", 1, "-s", "1MiB", "--pipeline", 4, "-d", 3], ALL, {}),
]
STALL_SERVERS = ["multiplex", "uring", "tokio"]

# NETECHO_BENCH_CASES=hold,rr1: only those cases (and no backpressure case unless "stall" is
# among them), for a quicker look at one figure.
ONLY = os.environ.get("NETECHO_BENCH_CASES")
if ONLY:
    CASES = [case for case in CASES if case[0] in ONLY.split(",")]
    if "stall" not in ONLY.split(","):
        STALL_SERVERS = []

# NETECHO_BENCH_BEFORE=PATH: another netecho binary (an earlier commit's release build) runs
# beside this one, interleaved in the same run, as the "before" of an A/B comparison: its
# iterative, epoll and io_uring servers join every case this one's are in.
BEFORE = os.environ.get("NETECHO_BENCH_BEFORE")
if BEFORE:
    for name, twin, label, flags in (
            ("serve-before", "serve", "`netecho serve` (iterative), before", []),
            ("multiplex-before", "multiplex", "`--multiplex --io epoll`, before",
             ["--multiplex", "--io", "epoll"]),
            ("uring-before", "uring", "`--multiplex` (io_uring), before",
             ["--multiplex", "--io", "uring"])):
        SERVERS[name] = (label, lambda port, flags=flags: [BEFORE, "serve", *flags, "-q",
                                                            "--port", str(port)])
        for case in CASES:
            # Cases may share one list (ALL): each gets the server once.
            if twin in case[3] and name not in case[3]:
                case[3].insert(case[3].index(twin) + 1, name)
        if twin in STALL_SERVERS:
            STALL_SERVERS.insert(STALL_SERVERS.index(twin) + 1, name)
    ALL = list(SERVERS)


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


def descendants(pid):
    """pid and all its descendants (socat's per-client children)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return out


def pss_kib(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class Server:
    """One server process, pinned to SERVER_CPU."""

    def __init__(self, name):
        self.name = name
        self.port = free_port()
        self.proc = subprocess.Popen(
            ["taskset", "-c", SERVER_CPU] + SERVERS[name][1](self.port),
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
        self.peak_pss = 0
        self.sampling = name == "socat"
        if self.sampling:
            self.sampler = threading.Thread(target=self.sample, daemon=True)
            self.sampler.start()

    def sample(self):
        while self.sampling:
            total = sum(pss_kib(p) for p in descendants(self.proc.pid))
            self.peak_pss = max(self.peak_pss, total)
            time.sleep(0.1)

    def status_kb(self, field):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise RuntimeError(f"no {field}")

    def peak_kib(self):
        if self.name == "socat":
            self.sampling = False
            self.sampler.join()
            return self.peak_pss
        return self.status_kb("VmHWM")

    def cpu_seconds(self):
        """(user, system) CPU seconds of all threads, with those of reaped children (socat)."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = [int(x) for x in f.read().rsplit(")", 1)[1].split()[11:15]]
        utime, stime, cutime, cstime = fields
        return (utime + cutime) / CLK_TCK, (stime + cstime) / CLK_TCK

    def wait_children_reaped(self, timeout=3.0):
        """socat: its per-client children count in cutime/cstime only once reaped."""
        deadline = time.monotonic() + timeout
        while len(descendants(self.proc.pid)) > 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.05)

    def stop(self):
        self.sampling = False
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def bench(server, args, duration):
    cmd = ["taskset", "-c", LOAD_CPU, NETECHO, "bench", "--port", str(server.port), "--json"]
    out = subprocess.run(cmd + [str(a) for a in args], capture_output=True, text=True,
                         timeout=duration + 60)
    # Exit status 1 means errors or lost replies: they are in the JSON, and counted.
    if out.returncode not in (0, 1) or not out.stdout.strip():
        raise RuntimeError(f"bench {args} failed ({out.returncode}): {out.stderr.strip()}")
    return json.loads(out.stdout)


def measure(name, args):
    duration = float(args[args.index("-d") + 1])
    server = Server(name)
    try:
        before = server.cpu_seconds()
        r = bench(server, args, duration)
        if name == "socat":
            server.wait_children_reaped()
        after = server.cpu_seconds()
        peak = server.peak_kib()
    finally:
        server.stop()
    msgs = max(r["messages"], 1)
    user, system = ((b - a) / msgs * 1e6 for a, b in zip(before, after))
    errors = sum(r["errors"].values()) + r["lost"] + r["failed_connections"]
    return {"msgs_per_sec": r["msgs_per_sec"], "mib_per_sec": r["mib_per_sec"],
            "p50": r["latency_us"]["p50"], "p99": r["latency_us"]["p99"],
            "cpu_us": user + system, "user_us": user, "sys_us": system,
            "peak_mib": peak / 1024, "errors": errors, "connect_ms": r["connect_ms"]}


def stall(name):
    server = Server(name)
    try:
        idle = server.status_kb("VmRSS")
        out = subprocess.run(["taskset", "-c", LOAD_CPU, LOAD, f"127.0.0.1:{server.port}",
                              str(STALL_BYTES), str(STALL_SECONDS)],
                             capture_output=True, text=True, timeout=STALL_SECONDS + 30)
        if out.returncode != 0:
            raise RuntimeError(f"load failed: {out.stderr.strip()}")
        r = dict(kv.split("=", 1) for kv in out.stdout.split())
        peak = server.status_kb("VmHWM")
    finally:
        server.stop()
    return {"idle_kib": idle, "peak_kib": peak, "growth_kib": peak - idle, "sent": int(r["sent"])}


def median(runs, key):
    return statistics.median(r[key] for r in runs)


def spread(runs, key, fmt):
    return "/".join(fmt.format(r[key]) for r in runs)


def fmt_us(us):
    return f"{us:.0f}" if us >= 100 else f"{us:.1f}"


def main():
    have_socat = shutil.which("socat") is not None
    results = {}
    started = time.monotonic()
    for case, _, args, who, _ in CASES:
        who = [n for n in who if n != "socat" or have_socat]
        for run in range(RUNS):
            for name in who:
                r = measure(name, args)
                results.setdefault((case, name), []).append(r)
                print(f"# {case} {name} run {run + 1}: "
                      + " ".join(f"{k}={v:.2f}" for k, v in r.items()),
                      file=sys.stderr, flush=True)
    for run in range(RUNS):
        for name in STALL_SERVERS:
            r = stall(name)
            results.setdefault(("stall", name), []).append(r)
            print(f"# stall {name} run {run + 1}: {r}", file=sys.stderr, flush=True)
    print(f"# all runs took {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)

    p = print
    p("Cases (the load, pinned to CPU 1):\n")
    for _, title, args, _, _ in CASES:
        p(f"- {title}: `netecho bench {' '.join(str(a) for a in args)}`")
    p(f"\nMedians of {RUNS} runs; in brackets, each run's value in run order.\n")
    p("| case | server | msgs/s | MiB/s | p50 µs | p99 µs | server CPU µs/msg "
      "| peak RSS MiB | errors |")
    p("|---|---|---|---|---|---|---|---|---|")
    for case, title, args, who, left_out in CASES:
        label = title
        for name in ALL:
            server = SERVERS[name][0]
            rs = results.get((case, name))
            if rs is None:
                why = left_out.get(name, "not installed")
                p(f"| {label} | {server} | {why} | | | | | | |")
                continue
            mibs = (f"{median(rs, 'mib_per_sec'):.0f} ({spread(rs, 'mib_per_sec', '{:.0f}')})"
                    if case == "bulk" else f"{median(rs, 'mib_per_sec'):.2f}")
            p(f"| {label} | {server} "
              f"| {median(rs, 'msgs_per_sec'):.0f} ({spread(rs, 'msgs_per_sec', '{:.0f}')}) "
              f"| {mibs} | {fmt_us(median(rs, 'p50'))} | {fmt_us(median(rs, 'p99'))} "
              f"| {median(rs, 'cpu_us'):.2f} ({spread(rs, 'cpu_us', '{:.2f}')}) "
              f"| {median(rs, 'peak_mib'):.1f} | {median(rs, 'errors'):.0f} |")
    p("\nServer CPU split into user and kernel (medians), µs per message:\n")
    p("| case | server | user | kernel |")
    p("|---|---|---|---|")
    for case, title, _, _, _ in CASES:
        for name in ALL:
            rs = results.get((case, name))
            if rs:
                p(f"| {title} | {SERVERS[name][0]} | {median(rs, 'user_us'):.2f} "
                  f"| {median(rs, 'sys_us'):.2f} |")
    p(f"\nBackpressure (benches/load.rs): one connection sends up to 1 GiB for {STALL_SECONDS} s "
      "and reads nothing\n")
    p("| server | idle RSS KiB | peak (VmHWM) KiB | growth KiB | bytes the client got out |")
    p("|---|---|---|---|---|")
    for name in STALL_SERVERS:
        rs = results[("stall", name)]
        p(f"| {SERVERS[name][0]} | {median(rs, 'idle_kib'):.0f} | {median(rs, 'peak_kib'):.0f} "
          f"| {median(rs, 'growth_kib'):.0f} ({spread(rs, 'growth_kib', '{:.0f}')}) "
          f"| {median(rs, 'sent'):.0f} |")

    if ONLY:
        return  # the targets need every case

    def m(case, name, key):
        return median(results[(case, name)], key)

    hold_mib, hold_err = m("hold", "multiplex", "peak_mib"), m("hold", "multiplex", "errors")
    p("\nAgainst the targets of issue #3 (`netecho serve --multiplex` vs the tokio reference)\n")
    p("| target | result | met? |")
    p("|---|---|---|")
    p(f"| {HOLD_CONNECTIONS // 1000}k connections held, VmHWM < 16 MiB, zero errors "
      f"| {hold_mib:.1f} MiB (tokio {m('hold', 'tokio', 'peak_mib'):.1f}), "
      f"{hold_err:.0f} errors | {'yes' if hold_mib < 16 and hold_err == 0 else '**no**'} |")
    for case, title in (("rr100", "req/resp 100 conns"), ("rr1", "req/resp 1 conn")):
        rate, ref = m(case, "multiplex", "msgs_per_sec"), m(case, "tokio", "msgs_per_sec")
        p(f"| {title}: rate ≥ reference | {rate:.0f} vs {ref:.0f} msgs/s ({rate / ref:.2f}×) "
          f"| {'yes' if rate >= ref else '**no**'} |")
        cpu, ref = m(case, "multiplex", "cpu_us"), m(case, "tokio", "cpu_us")
        p(f"| {title}: CPU per message ≤ 0.8 × reference | {cpu:.2f} vs {ref:.2f} µs "
          f"({cpu / ref:.2f}×) | {'yes' if cpu <= 0.8 * ref else '**no**'} |")
    bulk, ref = m("bulk", "multiplex", "mib_per_sec"), m("bulk", "tokio", "mib_per_sec")
    p(f"| bulk ≥ 1.2 × reference | {bulk:.0f} vs {ref:.0f} MiB/s ({bulk / ref:.2f}×) "
      f"| {'yes' if bulk >= 1.2 * ref else '**no**'} |")
    growth = m("stall", "multiplex", "growth_kib")
    p(f"| backpressure: peak within 1 MiB of idle | +{growth:.0f} KiB "
      f"| {'yes' if growth <= 1024 else '**no**'} |")

    p("\nAgainst the targets of issue #13 (`netecho serve --multiplex` on io_uring vs the tokio "
      "reference and the epoll loop)\n")
    p("| target | result | met? |")
    p("|---|---|---|")
    # (target, case, key, other server, unit, how to print, met when the ratio is)
    for target, case, key, other, unit, fmt, met in (
        ("100 conns × 64 B: CPU per message ≤ 0.85 × reference", "rr100", "cpu_us", "tokio",
         "µs", "{:.2f}", lambda ratio: ratio <= 0.85),
        ("100 conns × 64 B: rate ≥ reference", "rr100", "msgs_per_sec", "tokio",
         "msgs/s", "{:.0f}", lambda ratio: ratio >= 1),
        ("1 conn × 64 B: p50 ≤ the epoll loop's", "rr1", "p50", "multiplex",
         "µs", "{:.0f}", lambda ratio: ratio <= 1),
        ("bulk ≥ the epoll loop", "bulk", "mib_per_sec", "multiplex",
         "MiB/s", "{:.0f}", lambda ratio: ratio >= 1),
    ):
        got, ref = m(case, "uring", key), m(case, other, key)
        p(f"| {target} | {fmt.format(got)} vs {fmt.format(ref)} {unit} ({got / ref:.2f}×) "
          f"| {'yes' if met(got / ref) else '**no**'} |")
    peak, errors = m("hold", "uring", "peak_mib"), m("hold", "uring", "errors")
    p(f"| {HOLD_CONNECTIONS // 1000}k connections held: VmHWM < 16 MiB, zero errors "
      f"| {peak:.1f} MiB, {errors:.0f} errors | {'yes' if peak < 16 and errors == 0 else '**no**'} |")


if __name__ == "__main__":
    main()
