#!/usr/bin/env bash
# A/B of ferroplane binaries on DPDK ports, on this noisy VM: runs each binary in turn, ROUNDS
# times, forwarding net_pcap (infinite_rx, 64 valid 64-byte UDP frames) -> net_null, and prints
# Mpps and the forwarding thread's CPU time per packet (what the worker costs, whatever share of
# the core it got). Build each binary with `cargo build --release -p ferroplane-dataplane
# --features dpdk --bins` and copy it aside first. Needs root and huge pages.
#   scripts/dpdk-ab.sh ROUNDS BIN...      e.g. scripts/dpdk-ab.sh 3 /tmp/fp-old /tmp/fp-new
set -euo pipefail
rounds=${1:?usage: dpdk-ab.sh ROUNDS BIN...}
shift
[ $# -gt 0 ] || { echo "usage: dpdk-ab.sh ROUNDS BIN..." >&2; exit 2; }
here=$(cd "$(dirname "$0")/.." && pwd)
fpctl=$here/target/release/fpctl
[ -x "$fpctl" ] || { echo "dpdk-ab: build $fpctl first" >&2; exit 2; }
dir=$(mktemp -d /tmp/ferroplane-dpdk-ab.XXXXXX)
trap 'rm -rf "$dir"' EXIT
python3 - "$dir/in.pcap" <<'PY'
import struct, sys
def csum(b):
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    s = (s & 0xffff) + (s >> 16); s = (s & 0xffff) + (s >> 16)
    return (~s) & 0xffff
out = open(sys.argv[1], 'wb')
out.write(struct.pack('<IHHiIII', 0xa1b2c3d4, 2, 4, 0, 0, 65535, 1))
for n in range(1, 65):
    ip = bytearray(struct.pack('!BBHHHBBH4s4s', 0x45, 0, 46, n, 0, 64, 17, 0,
                               bytes([10, 1, 0, 2]), bytes([198, 18, 0, n])))
    ip[10:12] = struct.pack('!H', csum(bytes(ip)))
    f = bytes([2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 10, 8, 0]) + bytes(ip) + \
        struct.pack('!HHHH', 1024 + n, 9, 26, 0) + bytes(18)
    out.write(struct.pack('<IIII', 0, n, len(f), len(f)))
    out.write(f)
PY
cat > "$dir/r.toml" <<TOML
[dataplane]
workers = [1]
poll = "busy"
control_socket = "$dir/ctl.sock"

[[port]]
name = "left"
driver = "dpdk"
interface = "net_pcap0,rx_pcap=$dir/in.pcap,infinite_rx=1"
mac = "02:00:00:00:00:01"
addresses = ["10.1.0.1/24"]

[[port]]
name = "right"
driver = "dpdk"
interface = "net_null0,no-rx=1"
mac = "02:00:00:00:00:02"
addresses = ["10.2.0.1/24"]

[[route]]
prefix = "198.18.0.0/15"
nexthops = [{ via = "10.2.0.2" }]

[[neighbor]]
address = "10.2.0.2"
mac = "02:00:00:00:00:0b"
port = "right"
TOML
tx() {
    "$fpctl" --socket "$dir/ctl.sock" stats --json |
        python3 -c 'import json,sys; print([p for p in json.load(sys.stdin)["ports"] if p["name"]=="right"][0]["tx_packets"])'
}
ticks() { # utime + stime of the worker thread of pid $1, in clock ticks
    for t in /proc/"$1"/task/*; do
        if grep -q fp-worker "$t/comm"; then
            awk '{split($0,a,") "); split(a[2],f," "); print f[12]+f[13]}' "$t/stat"
        fi
    done
}
for _ in $(seq "$rounds"); do
    for b in "$@"; do
        "$b" run -c "$dir/r.toml" > "$dir/run.log" 2>&1 &
        pid=$!
        sleep 3
        kill -0 "$pid" 2>/dev/null || { cat "$dir/run.log" >&2; exit 1; }
        c0=$(tx); k0=$(ticks "$pid"); sleep 4; c1=$(tx); k1=$(ticks "$pid")
        kill "$pid"; wait "$pid" 2>/dev/null || true
        python3 -c "print('%-40s %6.2f Mpps  %6.1f ns/pkt CPU' % ('$b', ($c1-$c0)/4e6, ($k1-$k0)*1e7/max(1,$c1-$c0)))"
    done
done
