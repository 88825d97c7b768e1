#!/usr/bin/env python3
"""What `serve --hello` costs the server per connection (issue #22): one build of netecho, run
with and without it, side by side.

Usage: benches/hello_cost.py [BINARY]   (default: target/release/netecho)
(RUNS=N: runs per configuration, default 3; CONNS=N: connections per run, default 20000)

Each run starts `BINARY serve --multiplex -q ARGS` pinned to CPU 0 (report_cost.py's
start_server), and from this script, pinned to CPU 1, opens CONNS connections one after the
other: each reads the hello line (with --hello), sends one byte, reads its echo and closes. The
server's time on a CPU (all threads, /proc/PID/task/*/schedstat) divided by the connections is its CPU per
connection: accept, the core, the hello (a JSON line of some 180 bytes, a getsockname, one
more send or a longer first one), the echo and the close. The configurations alternate, RUNS
times each; medians are printed with each run's value.
"""

import os
import socket
import statistics
import sys

from report_cost import free_port, start_server

CONFIGS = [("plain", ["-q"]), ("--hello", ["-q", "--hello"])]


def connections(port, count, hello):
    for _ in range(count):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            if hello:
                line = b""
                while not line.endswith(b"\n"):
                    line += s.recv(4096)
            s.sendall(b"x")
            assert s.recv(1) == b"x"


def cpu_ns(pid):
    """Nanoseconds on a CPU of every thread of `pid` (schedstat: exact, where the ticks of
    /proc/PID/stat are sampled every 10 ms and blur a per-connection cost of a few µs)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/schedstat") as f:
            total += int(f.read().split()[0])
    return total


def run(binary, args, count):
    port = free_port()
    server = start_server(binary, port, args)
    try:
        before = cpu_ns(server.pid)
        connections(port, count, "--hello" in args)
        after = cpu_ns(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=10)
    return (after - before) / count / 1000


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else "target/release/netecho"
    runs = int(os.environ.get("RUNS", "3"))
    count = int(os.environ.get("CONNS", "20000"))
    os.sched_setaffinity(0, {1})
    results = {name: [] for name, _ in CONFIGS}
    for _ in range(runs):
        for name, args in CONFIGS:
            results[name].append(run(binary, args, count))
    base = statistics.median(results["plain"])
    for name, values in results.items():
        median = statistics.median(values)
        runs_text = ", ".join(f"{v:.2f}" for v in values)
        print(f"{name:8} {median:6.2f} µs of server CPU per connection "
              f"({median - base:+.2f} vs plain; runs: {runs_text})")


if __name__ == "__main__":
    main()
