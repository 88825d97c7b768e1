#!/usr/bin/env bash
# A burst of 10,000 new clients against `netecho serve --multiplex` (issue #20, item 8): the
# connect_burst example (benches/connect_burst.rs, 64 threads of blocking connects) against a
# fresh server, RUNS times, in a network namespace of its own, so that `nstat` counts this
# burst's listen-queue overflows (TcpExtListenOverflows) and nothing else on the machine.
# Needs root (ip netns). PIN="taskset -c 1" pins the server and the client to one CPU.
#   benches/connect_burst.sh [NETECHO_BINARY] [RUNS] [-- extra serve options]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --release --example connect_burst
bin=${1:-target/release/netecho}
runs=${2:-3}
shift $(( $# < 2 ? $# : 2 ))
[[ ${1:-} == -- ]] && shift
ns=netecho-burst-$$
ip netns add "$ns"
trap 'ip netns del "$ns"' EXIT
ip netns exec "$ns" ip link set lo up
echo "somaxconn in the namespace: $(ip netns exec "$ns" cat /proc/sys/net/core/somaxconn)"
for run in $(seq "$runs"); do
    PIN=${PIN:-} ip netns exec "$ns" bash -c '
        ulimit -n 20000
        bin=$1; shift
        before=$(nstat -az TcpExtListenOverflows | awk "/ListenOverflows/ {print \$2}")
        fifo=$(mktemp -u) && mkfifo "$fifo"
        ${PIN:-} "$bin" serve --multiplex -q --port 0 "$@" >"$fifo" &
        server=$!
        exec 3<"$fifo" && rm "$fifo"
        read -r first <&3
        cat <&3 >/dev/null &
        port=${first##*:}
        ${PIN:-} target/release/examples/connect_burst 127.0.0.1:"$port" 10000
        after=$(nstat -az TcpExtListenOverflows | awk "/ListenOverflows/ {print \$2}")
        echo "ListenOverflows: $((after - before))"
        kill -TERM "$server"; wait "$server" || true
    ' _ "$bin" "$@"
done
