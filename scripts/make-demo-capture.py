#!/usr/bin/env python3
"""Writes the bundled capture replayed by `scripts/demo-replay.sh`: what hosts h1 (on `left`) and
h2 (on `right`) send to a ferroplane router configured as examples/router.toml.

Usage: make-demo-capture.py CONFIG OUT_LEFT.pcap OUT_RIGHT.pcap
Built with scapy, an implementation independent of ferroplane's own builders.
"""
import sys
import tomllib

from scapy.all import ARP, ICMP, IP, UDP, TCP, Ether, wrpcap
from scapy.layers.inet6 import IPv6, ICMPv6EchoRequest, ICMPv6ND_NS, ICMPv6ND_NA, ICMPv6NDOptSrcLLAddr, ICMPv6NDOptDstLLAddr

cfg = tomllib.load(open(sys.argv[1], "rb"))
ports = {p["name"]: p for p in cfg["port"]}
left, right = ports["left"], ports["right"]
R_L, R_R = left["mac"], right["mac"]
H1, H2 = "02:00:00:00:01:02", "02:00:00:00:02:02"
H2_ALT = "02:00:00:00:02:03"


def addr(port, v6):
    for a in port["addresses"]:
        if (":" in a) == v6:
            return a.split("/")[0]


RL4, RR4, RL6, RR6 = addr(left, False), addr(right, False), addr(left, True), addr(right, True)
h1_4, h2_4 = "10.1.0.2", "10.2.0.2"
h1_6, h2_6 = "2001:db8:1::2", "2001:db8:2::2"

left_frames, right_frames = [], []


def at(lst, t, pkt):
    pkt.time = t
    lst.append(pkt)


# h1 resolves the router, pings it, then sends traffic through it.
at(left_frames, 1.000, Ether(src=H1, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=H1, psrc=h1_4, pdst=RL4))
at(left_frames, 1.010, Ether(src=H1, dst=R_L) / IP(src=h1_4, dst=RL4) / ICMP(type=8, id=7, seq=1) / b"ferroplane-demo")
at(left_frames, 1.020, Ether(src=H1, dst=R_L) / IP(src=h1_4, dst=h2_4, ttl=64) / UDP(sport=50000, dport=5001) / b"to h2, waits for ARP")
# h2 answers the router's ARP request for 10.2.0.2: the queued datagram is released.
at(right_frames, 1.030, Ether(src=H2, dst=R_R) / ARP(op=2, hwsrc=H2, psrc=h2_4, hwdst=R_R, pdst=RR4))
# Routed prefix with weighted ECMP over 10.2.0.2 / 10.2.0.3: several flows spread over both.
for i in range(6):
    at(left_frames, 1.040 + i * 0.001, Ether(src=H1, dst=R_L) / IP(src=h1_4, dst="198.51.100.7") / UDP(sport=50100 + i, dport=5001) / b"ecmp")
at(right_frames, 1.0455, Ether(src=H2_ALT, dst=R_R) / ARP(op=2, hwsrc=H2_ALT, psrc="10.2.0.3", hwdst=R_R, pdst=RR4))
# A traceroute probe with TTL 1: ICMP time exceeded from the router.
at(left_frames, 1.050, Ether(src=H1, dst=R_L) / IP(src=h1_4, dst=h2_4, ttl=1) / UDP(sport=50200, dport=33434) / b"probe")
# IPv6: h1 resolves the router, then pings h2 (the router resolves h2 with an NS; h2 answers).
sn = "ff02::1:ff00:1"
at(left_frames, 1.060, Ether(src=H1, dst="33:33:ff:00:00:01") / IPv6(src=h1_6, dst=sn, hlim=255) / ICMPv6ND_NS(tgt=RL6) / ICMPv6NDOptSrcLLAddr(lladdr=H1))
at(left_frames, 1.070, Ether(src=H1, dst=R_L) / IPv6(src=h1_6, dst=h2_6, hlim=64) / ICMPv6EchoRequest(id=9, seq=1) / b"six")
at(right_frames, 1.080, Ether(src=H2, dst=R_R) / IPv6(src=h2_6, dst=RR6, hlim=255) / ICMPv6ND_NA(tgt=h2_6, R=0, S=1, O=1) / ICMPv6NDOptDstLLAddr(lladdr=H2))
at(left_frames, 1.090, Ether(src=H1, dst=R_L) / IPv6(src=h1_6, dst=h2_6, hlim=64) / ICMPv6EchoRequest(id=9, seq=2) / b"six")
# A TCP SYN through, a corrupted header (dropped: ipv4_bad_checksum), an unroutable destination.
at(left_frames, 1.100, Ether(src=H1, dst=R_L) / IP(src=h1_4, dst=h2_4) / TCP(sport=40000, dport=80, flags="S"))
bad = Ether(src=H1, dst=R_L) / IP(src=h1_4, dst=h2_4, chksum=0x1234) / UDP(sport=1, dport=2)
at(left_frames, 1.110, bad)
at(left_frames, 1.120, Ether(src=H1, dst=R_L) / IP(src=h1_4, dst="192.0.2.99") / UDP(sport=50300, dport=5001) / b"nowhere")

wrpcap(sys.argv[2], left_frames)
wrpcap(sys.argv[3], right_frames)
print(f"wrote {len(left_frames)} frames to {sys.argv[2]}, {len(right_frames)} to {sys.argv[3]}")
