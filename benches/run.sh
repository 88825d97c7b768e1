#!/usr/bin/env bash
# Reproduces the table of benches/RESULTS.md: builds the release binaries (netecho, the tokio
# reference and the load client) and runs benches/run.py, which pins the server to CPU 0 and the
# load to CPU 1. Needs socat and iperf3 for those columns (apt-get install -y socat iperf3).
# About 5 minutes; NETECHO_BENCH_RUNS=N changes the number of runs per case (default 3).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin netecho --examples
# The 10,000-connection case needs ~10,000 descriptors in each of the two processes.
ulimit -n "$(ulimit -Hn)"
python3 benches/run.py
