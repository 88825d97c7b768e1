#!/usr/bin/env python3
"""What the report costs the multiplexed loop: server CPU per message with the per-read lines on
(no -q) and stdout to /dev/null, for two builds of netecho side by side (issue #10: the report
writer thread must not cost more than 3%).

Usage: benches/report_cost.py BEFORE_BINARY AFTER_BINARY [MORE_BINARIES...]
(RUNS=N in the environment: runs per build, default 5)

Each run starts `BINARY serve --multiplex --port P` pinned to CPU 0 with stdout to /dev/null
(the first line, the address, is not needed: the port is chosen here), loads it with
`AFTER_BINARY bench -c 100 -s 64 -d 10 --json` pinned to CPU 1, and divides the server's
utime+stime (all threads, /proc/PID/stat) by the verified messages. The builds alternate, RUNS
times each; medians are printed with each run's value, and each build against the first.
"""

import json
import os
import socket
import statistics
import subprocess
import sys
import time

CLK_TCK = 100


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def start_server(server_bin, port, args=()):
    """`serve --multiplex` on CPU 0 and `port`, once it accepts (10 s at most), settled."""
    server = subprocess.Popen(["taskset", "-c", "0", server_bin, "serve", "--multiplex",
                               "--port", str(port), *args],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                server.kill()
                raise
            time.sleep(0.05)
    time.sleep(0.2)
    return server


def run(server_bin, load_bin):
    port = free_port()
    server = start_server(server_bin, port)
    try:
        before = cpu_ticks(server.pid)
        out = subprocess.run(["taskset", "-c", "1", load_bin, "bench", "--port", str(port),
                              "-c", "100", "-s", "64", "-d", "10", "--json"],
                             capture_output=True, text=True, timeout=60)
        after = cpu_ticks(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=10)
    r = json.loads(out.stdout)
    msgs = r["messages"]
    return {"us_per_msg": (after - before) / CLK_TCK / msgs * 1e6,
            "msgs_per_sec": r["msgs_per_sec"]}


def main():
    binaries = sys.argv[1:]
    if len(binaries) < 2:
        sys.exit(__doc__)
    load_bin = binaries[1]
    runs = int(os.environ.get("RUNS", "5"))
    results = {b: [] for b in binaries}
    for i in range(runs):
        for binary in binaries:
            r = run(binary, load_bin)
            results[binary].append(r)
            print(f"# run {i + 1} {binary}: {r['us_per_msg']:.3f} µs/msg, "
                  f"{r['msgs_per_sec']:.0f} msgs/s", file=sys.stderr, flush=True)
    base = statistics.median(r["us_per_msg"] for r in results[binaries[0]])
    print("| build | server CPU µs/msg, median (each run) | vs first | msgs/s, median |")
    print("|---|---|---|---|")
    for binary in binaries:
        rs = results[binary]
        cpu = statistics.median(r["us_per_msg"] for r in rs)
        each = "/".join(f"{r['us_per_msg']:.2f}" for r in rs)
        rate = statistics.median(r["msgs_per_sec"] for r in rs)
        print(f"| `{os.path.basename(binary)}` | {cpu:.2f} ({each}) "
              f"| {(cpu / base - 1) * 100:+.1f}% | {rate:.0f} |")


if __name__ == "__main__":
    main()
