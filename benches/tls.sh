#!/usr/bin/env bash
# Reproduces the TLS tables of benches/RESULTS.md: builds the release binaries (netecho and the
# tokio-rustls reference, which only `--features reference` builds) and runs benches/tls.py,
# which pins each server to CPU 0 and the load (`netecho bench --tls`) to CPU 1.
# Needs socat and openssl (apt-get install -y socat openssl).
# About 5 minutes; NETECHO_BENCH_RUNS=N changes the number of runs per case (default 3),
# NETECHO_TLS_SERVERS=socat,tokio the servers (default all three).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin netecho --example tokio_rustls_echo --features reference
# The 10,000-client case needs ~10,000 descriptors in each of the two processes.
ulimit -n "$(ulimit -Hn)"
python3 benches/tls.py
