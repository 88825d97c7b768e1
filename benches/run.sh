#!/usr/bin/env bash
# Reproduces the tables of benches/RESULTS.md: builds the release binaries (netecho, the tokio
# reference, which only `--features reference` builds, and the backpressure client) and runs
# benches/run.py, which pins each server to CPU 0 and the load (`netecho bench`) to CPU 1.
# Needs socat for its rows (apt-get install -y socat).
# About 6 minutes; NETECHO_BENCH_RUNS=N changes the number of runs per case (default 3).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin netecho --examples --features reference
# The 10,000-connection case needs ~10,000 descriptors in each of the two processes.
ulimit -n "$(ulimit -Hn)"
python3 benches/run.py
