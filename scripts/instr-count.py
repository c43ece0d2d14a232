#!/usr/bin/env python3
"""Instructions per packet from a callgrind file written with --dump-instr=yes.

usage: instr-count.py CALLGRIND_FILE BINARY PACKETS [START END [MIN]]

Prints the total per packet and the symbols that ran them, told apart by address (every stage's
burst loop is a symbol named `<S as ferroplane_pipeline::stage::Stage>::process`). With START
and END (a symbol's address range, as printed), also its disassembly, each instruction with how
many times per packet it ran (blank under MIN, default 0.05).
"""
import bisect
import collections
import re
import subprocess
import sys


def position(token, previous):
    """A callgrind position: absolute (0x...), relative (+N / -N) or the same (*)."""
    if token == "*":
        return previous
    if token[0] in "+-":
        return previous + int(token, 0)
    return int(token, 0)


def self_costs(path):
    """Instruction address -> times it ran, excluding the inclusive costs of calls."""
    cost = collections.Counter()
    addr = 0
    after_call = False
    for raw in open(path):
        line = raw.strip()
        if line.startswith("calls="):
            after_call = True
            continue
        if re.match(r"^(0x[0-9a-f]+|[+\-*])", line):
            parts = line.split()
            addr = position(parts[0], addr)
            if len(parts) >= 3 and not after_call:
                cost[addr] += int(parts[2])
        after_call = False
    return cost


def symbols(binary):
    """(start, size, name) of the binary's text symbols, sorted."""
    out = subprocess.run(["nm", "-C", "-S", "--defined-only", binary],
                         capture_output=True, text=True, check=True).stdout
    syms = []
    for line in out.splitlines():
        p = line.split(None, 3)
        if len(p) == 4 and p[2] in "tTwW":
            syms.append((int(p[0], 16), int(p[1], 16), p[3]))
    return sorted(syms)


def main():
    path, binary, packets = sys.argv[1], sys.argv[2], float(sys.argv[3])
    cost = self_costs(path)
    print(f"total {sum(cost.values()) / packets:.1f} instructions per packet")
    syms = symbols(binary)
    starts = [s[0] for s in syms]
    by_symbol = collections.Counter()
    for addr, c in cost.items():
        i = bisect.bisect_right(starts, addr) - 1
        if i >= 0 and addr < syms[i][0] + syms[i][1]:
            start, size, name = syms[i]
            by_symbol[(hex(start), hex(start + size), name[:70])] += c
    for (start, end, name), c in by_symbol.most_common(12):
        print(f"{c / packets:8.1f}  {start} {end}  {name}")
    if len(sys.argv) > 5:
        least = float(sys.argv[6]) if len(sys.argv) > 6 else 0.05
        dis = subprocess.run(["objdump", "-d", "--no-show-raw-insn",
                              f"--start-address={sys.argv[4]}", f"--stop-address={sys.argv[5]}",
                              binary], capture_output=True, text=True, check=True).stdout
        for line in dis.splitlines():
            m = re.match(r"^\s*([0-9a-f]+):\s*(.*)$", line)
            if m:
                c = cost.get(int(m.group(1), 16), 0) / packets
                print(f"{c:6.2f} {line}" if c >= least else f"       {line}")


if __name__ == "__main__":
    main()
