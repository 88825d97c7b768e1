#!/bin/sh
# UDP guard, end to end: does a flood of datagrams from many forged (non-loopback) sources slow
# the TCP clients of `serve --multiplex --udp`, which share its event loop? Runs as root, in a
# private network namespace whose lo carries 10.0.0.0/8, so the flood never leaves it.
#
#   unshare --net benches/udp_flood.sh NETECHO [SECONDS] [SERVE ARGS...]
#
# e.g. `... NETECHO 3 --udp-rate 1`: the guard's table stays full only of sources whose bucket
# has not refilled, which at the default rate (a token back every 1 ms) a flood cannot keep up.
#
# Prints `netecho bench` (1 TCP connection, 64 B, closed loop) without, then with, the flood;
# the flood (python3) sends from 10.x.y.z, a new address per datagram, via IP_PKTINFO.
set -eu
netecho=$1
secs=${2:-3}
shift 2 || shift $#
ip link set lo up
ip addr add 10.0.0.1/8 dev lo
out=$(mktemp)
"$netecho" serve --multiplex --udp -q --host 0.0.0.0 --port 0 "$@" >"$out" &
server=$!
trap 'kill "$server" 2>/dev/null || true; rm -f "$out"' EXIT   # even if the flood fails
while ! grep -q listening "$out"; do sleep 0.05; done
port=$(head -1 "$out" | sed 's/.*://')
echo "== no flood"
"$netecho" bench -c 1 -s 64 -d "$secs" --port "$port" 2>&1 | grep -E '^(messages|latency)'
python3 - "$port" "$((secs + 2))" <<'PY' &
import socket, struct, sys, time
port, secs = int(sys.argv[1]), float(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
end, n = time.time() + secs, 0
while time.time() < end:
    for _ in range(1000):
        n += 1
        src = struct.pack("!I", 0x0A000000 + 2 + n % 0xFFFFF0)
        info = struct.pack("I4s4s", 0, src, bytes(4))  # struct in_pktinfo; IP_PKTINFO is 8
        try:
            s.sendmsg([b"x"], [(socket.IPPROTO_IP, 8, info)], 0, ("10.0.0.1", port))
        except OSError:
            pass
print(f"flood: {n} datagrams from {min(n, 0xFFFFF0)} sources in {secs:.0f} s", file=sys.stderr)
PY
flood=$!
sleep 1   # let the flood fill the guard's table (65,536 sources)
echo "== flood of new sources"
"$netecho" bench -c 1 -s 64 -d "$secs" --port "$port" 2>&1 | grep -E '^(messages|latency)'
wait "$flood" || echo "the flood failed" >&2
kill "$server"
wait "$server" 2>/dev/null || true
tail -1 "$out"
