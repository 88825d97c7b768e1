#!/usr/bin/env python3
"""What JSON logs and metrics cost the multiplexed loop (issue #14: at most 3% more server CPU
per message): one build of netecho, run with and without them, side by side.

Usage: benches/observe_cost.py [BINARY]   (default: target/release/netecho)
(RUNS=N in the environment: runs per configuration, default 3)

Each run starts `BINARY serve --multiplex --port P ARGS` pinned to CPU 0 with stdout to
/dev/null, loads it with `BINARY bench -c 100 -s 64 -d 10 --json` pinned to CPU 1, and divides
the server's utime+stime (all threads, /proc/PID/stat) by the verified messages. With
`--metrics`, this script scrapes http://ADDR/metrics once a second during the load (a busy
Prometheus scrapes every 15 s), so the scrapes' cost is in the figure. The configurations
alternate, RUNS times each; medians are printed with each run's value, and each configuration
against the one before it in CONFIGS (its baseline).
"""

import json
import os
import statistics
import subprocess
import sys
import threading
import urllib.request

# The server's start and CPU measure are report_cost.py's (benches/ is on the import path when
# a script in it runs).
from report_cost import CLK_TCK, cpu_ticks, free_port, start_server

# (name, serve arguments, index of the baseline it is compared with)
CONFIGS = [
    ("-q (text)", ["-q"], None),
    ("-q --log-format json --metrics", ["-q", "--log-format", "json", "--metrics", "METRICS"], 0),
    ("every read reported (text)", [], None),
    ("every read reported (json)", ["--log-format", "json"], 2),
]


def scrape_every_second(url, stop, scrapes):
    while not stop.wait(1.0):
        try:
            with urllib.request.urlopen(url, timeout=5) as reply:
                reply.read()
            scrapes.append(1)
        except OSError:
            pass


def run(binary, args):
    port = free_port()
    metrics = f"127.0.0.1:{free_port()}"
    args = [metrics if a == "METRICS" else a for a in args]
    server = start_server(binary, port, args)
    stop = threading.Event()
    scrapes = []
    scraper = None
    try:
        if "--metrics" in args:
            scraper = threading.Thread(target=scrape_every_second,
                                       args=(f"http://{metrics}/metrics", stop, scrapes))
            scraper.start()
        before = cpu_ticks(server.pid)
        out = subprocess.run(["taskset", "-c", "1", binary, "bench", "--port", str(port),
                              "-c", "100", "-s", "64", "-d", "10", "--json"],
                             capture_output=True, text=True, timeout=60)
        after = cpu_ticks(server.pid)
    finally:
        stop.set()
        if scraper:
            scraper.join()
        server.terminate()
        server.wait(timeout=10)
    r = json.loads(out.stdout)
    if "--metrics" in args and not scrapes:
        sys.exit("no scrape of the metrics succeeded")
    return {"us_per_msg": (after - before) / CLK_TCK / r["messages"] * 1e6,
            "msgs_per_sec": r["msgs_per_sec"]}


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else "target/release/netecho"
    runs = int(os.environ.get("RUNS", "3"))
    results = [[] for _ in CONFIGS]
    for i in range(runs):
        for n, (name, args, _) in enumerate(CONFIGS):
            r = run(binary, args)
            results[n].append(r)
            print(f"# run {i + 1} {name}: {r['us_per_msg']:.3f} µs/msg, "
                  f"{r['msgs_per_sec']:.0f} msgs/s", file=sys.stderr, flush=True)
    medians = [statistics.median(r["us_per_msg"] for r in rs) for rs in results]
    print("| serve --multiplex ... | server CPU µs/msg, median (each run) | vs baseline "
          "| msgs/s, median |")
    print("|---|---|---|---|")
    for n, (name, _, base) in enumerate(CONFIGS):
        each = "/".join(f"{r['us_per_msg']:.2f}" for r in results[n])
        rate = statistics.median(r["msgs_per_sec"] for r in results[n])
        versus = "" if base is None else f"{(medians[n] / medians[base] - 1) * 100:+.1f}%"
        print(f"| `{name}` | {medians[n]:.2f} ({each}) | {versus} | {rate:.0f} |")


if __name__ == "__main__":
    main()
