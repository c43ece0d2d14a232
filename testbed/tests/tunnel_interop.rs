//! Geneve, VXLAN and the IP-in-IP family against real peers: scapy builds and checks the frames
//! field by field, tshark dissects them (no malformed packet, no expert error, checksums
//! verified). This kernel has no Geneve or IPIP modules, so these two tools are the peers.
//!
//! Offline (`ferroplane replay`, in-memory ports): encap and decap of each tunnel kind, bad input
//! with its counted drops, ARP on the overlay, the tunnel MTU. Live (`ferroplane run` on AF_XDP,
//! needs root): h1 pings through a Geneve / IPIP tunnel whose far end is a scapy responder on
//! h2's raw socket.
//!
//! Replay topology (every MAC fixed, underlay neighbours static):
//!
//! ```text
//!   h1 10.1.0.2 --- left [ferroplane] right 10.2.0.1 / 2001:db8:2::1 --- peer 10.2.0.2 / 2001:db8:2::2
//!                                  \== tunnel ==> remote peer, behind it 198.51.100.0/24, 2001:db8:100::/48
//! ```

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ferroplane_testbed::live::{bed_with, sh, stats, SERIAL};
use ferroplane_testbed::{
    require_scapy, require_tool, scratch_dir, stop_gracefully, workspace_bin,
};

const LEFT_MAC: &str = "02:00:00:00:01:01";
const H1_MAC: &str = "02:00:00:00:01:02";
const RIGHT_MAC: &str = "02:00:00:00:02:01";
const PEER_MAC: &str = "02:00:00:00:02:02";

/// The two-port router of the replay tests plus `body` (tunnels, routes, neighbours).
fn config(body: &str) -> String {
    format!(
        r#"
[dataplane]
workers = [1]

[[port]]
name = "left"
driver = "memory"
mac = "{LEFT_MAC}"
addresses = ["10.1.0.1/24", "2001:db8:1::1/64"]

[[port]]
name = "right"
driver = "memory"
mac = "{RIGHT_MAC}"
addresses = ["10.2.0.1/24", "2001:db8:2::1/64"]

[[neighbor]]
address = "10.1.0.2"
mac = "{H1_MAC}"
port = "left"

[[neighbor]]
address = "2001:db8:1::2"
mac = "{H1_MAC}"
port = "left"

[[neighbor]]
address = "10.2.0.2"
mac = "{PEER_MAC}"
port = "right"

[[neighbor]]
address = "2001:db8:2::2"
mac = "{PEER_MAC}"
port = "right"
{body}"#
    )
}

/// The tunnel each case runs over (IPv4 and IPv6 inner share one IPIP tunnel per outer family).
fn tunnel_of(case: &str) -> &'static str {
    match case {
        "geneve" => "gnv0",
        "vxlan" => "vx0",
        "geneve6" => "gnv6",
        "ip4in4" | "ip6in4" => "ip4",
        "ip4in6" | "ip6in6" => "ip6",
        _ => panic!("unknown case {case}"),
    }
}

/// A `[[tunnel]]` section; VXLAN/Geneve with static overlay neighbours when `neighbours`.
fn tunnel_toml(name: &str, neighbours: bool) -> String {
    let (body, overlay, nbr_mac) = match name {
        "gnv0" => (
            r#"kind = "geneve"
local = "10.2.0.1"
remote = "10.2.0.2"
vni = 5000
ttl = 40
mac = "02:00:00:00:0a:01"
options = [{ class = 0x0102, type = 0x01, data = "0a0b0c0d" }, { class = 0xffff, type = 0x22 }]"#,
            100,
            Some("02:00:00:00:0a:02"),
        ),
        "vx0" => (
            r#"kind = "vxlan"
local = "10.2.0.1"
remote = "10.2.0.2"
vni = 100
ttl = 50
mac = "02:00:00:00:0b:01""#,
            101,
            Some("02:00:00:00:0b:02"),
        ),
        "gnv6" => (
            r#"kind = "geneve"
local = "2001:db8:2::1"
remote = "2001:db8:2::2"
vni = 6000
ttl = 41
mac = "02:00:00:00:0c:01"
options = [{ class = 0x0102, type = 0x01, data = "0a0b0c0d" }, { class = 0xffff, type = 0x22 }]"#,
            104,
            Some("02:00:00:00:0c:02"),
        ),
        "ip4" => (
            r#"kind = "ipip"
local = "10.2.0.1"
remote = "10.2.0.2"
ttl = 30"#,
            102,
            None,
        ),
        "ip6" => (
            r#"kind = "ipip"
local = "2001:db8:2::1"
remote = "2001:db8:2::2"
ttl = 31"#,
            103,
            None,
        ),
        _ => panic!("unknown tunnel {name}"),
    };
    let mut s = format!(
        "\n[[tunnel]]\nname = \"{name}\"\n{body}\naddresses = [\"10.{overlay}.0.1/24\", \"fd00:{overlay}::1/64\"]\n"
    );
    if let (true, Some(mac)) = (neighbours, nbr_mac) {
        for a in [format!("10.{overlay}.0.2"), format!("fd00:{overlay}::2")] {
            s +=
                &format!("\n[[neighbor]]\naddress = \"{a}\"\nmac = \"{mac}\"\nport = \"{name}\"\n");
        }
    }
    s
}

/// Routes for the far networks into `name`: `via` its overlay peer (VXLAN/Geneve) or `dev`.
fn routes_into(name: &str) -> String {
    let overlay = match name {
        "gnv0" => 100,
        "vx0" => 101,
        "gnv6" => 104,
        _ => 0,
    };
    let (v4, v6) = if overlay == 0 {
        (format!("{{ dev = \"{name}\" }}"), format!("{{ dev = \"{name}\" }}"))
    } else {
        (format!("{{ via = \"10.{overlay}.0.2\" }}"), format!("{{ via = \"fd00:{overlay}::2\" }}"))
    };
    format!(
        "\n[[route]]\nprefix = \"198.51.100.0/24\"\nnexthops = [{v4}]\n\n[[route]]\nprefix = \"2001:db8:100::/48\"\nnexthops = [{v6}]\n"
    )
}

/// The scapy side: builds the input captures and checks the outputs. Modes:
/// `gen-encap|gen-decap|gen-arp|gen-mtu CASE OUT...`, `check-encap|check-decap|check-arp|check-mtu
/// CASE PCAP...`, `gen-bad OUT`. Every check prints `ok ...` or `FAIL ...` and exits non-zero.
const SCAPY: &str = r#"
import os, sys
from scapy.all import Ether, IP, UDP, ICMP, ARP, Raw, rdpcap, wrpcap, NoPayload, IPerror
from scapy.layers.inet6 import IPv6, ICMPv6PacketTooBig, ICMPv6EchoRequest, ICMPv6EchoReply, ICMPv6TimeExceeded
from scapy.layers.vxlan import VXLAN
from scapy.contrib.geneve import GENEVE, GeneveOptions

LEFT, H1, RIGHT, PEER = "02:00:00:00:01:01", "02:00:00:00:01:02", "02:00:00:00:02:01", "02:00:00:00:02:02"
T = {
    "geneve": dict(kind="geneve", v6=False, inner6=False, vni=5000, ttl=40, dport=6081,
                   mac="02:00:00:00:0a:01", nbr="02:00:00:00:0a:02", ov="10.100.0", mtu=1500 - 62),
    "vxlan": dict(kind="vxlan", v6=False, inner6=False, vni=100, ttl=50, dport=4789,
                  mac="02:00:00:00:0b:01", nbr="02:00:00:00:0b:02", ov="10.101.0", mtu=1500 - 50),
    "geneve6": dict(kind="geneve", v6=True, inner6=True, vni=6000, ttl=41, dport=6081,
                    mac="02:00:00:00:0c:01", nbr="02:00:00:00:0c:02", ov="10.104.0", mtu=1500 - 82),
    "ip4in4": dict(kind="ipip", v6=False, inner6=False, ttl=30, mtu=1480, ov="10.102.0"),
    "ip6in4": dict(kind="ipip", v6=False, inner6=True, ttl=30, mtu=1480, ov="10.102.0"),
    "ip4in6": dict(kind="ipip", v6=True, inner6=False, ttl=31, mtu=1460, ov="10.103.0"),
    "ip6in6": dict(kind="ipip", v6=True, inner6=True, ttl=31, mtu=1460, ov="10.103.0"),
}
OPTS = [(0x0102, 0x01, bytes.fromhex("0a0b0c0d")), (0xffff, 0x22, b"")]
PAYLOAD = b"ferroplane tunnel interop " * 2

def fail(msg):
    print("FAIL " + msg)
    sys.exit(1)

def check(cond, msg):
    if not cond:
        fail(msg)

def same(got, want, what):
    check(bytes(got) == bytes(want),
          "%s differs:\n got  %s\n want %s\n%r\n%r" % (what, bytes(got).hex(), bytes(want).hex(), got, want))

def at(p, t):
    p.time = t
    return p

def nth(p, i):
    for _ in range(i):
        p = p.payload
    return p

def checksums(p):
    """Every checksum of every layer (outer and inner) as scapy recomputes it."""
    i, layer = 0, p
    # An ICMP error quotes a truncated packet whose checksums cannot match: stop there.
    while not isinstance(layer, NoPayload) and not layer.__class__.__name__.endswith("error"):
        for f in ("chksum", "cksum"):
            if f in [x.name for x in layer.fields_desc]:
                got = getattr(layer, f)
                if isinstance(layer, UDP) and got == 0 and isinstance(layer.underlayer, IP):
                    continue  # IPv4 UDP checksum zero: none (RFC 768, RFC 7348 5)
                q = p.__class__(bytes(p))
                setattr(nth(q, i), f, None)
                want = getattr(nth(p.__class__(bytes(q)), i), f)
                check(got == want, "%s checksum 0x%04x, scapy computes 0x%04x in %r" % (layer.name, got, want, p))
        if isinstance(layer, IP) and (layer.flags.MF or layer.frag):
            break  # a fragment: its transport checksum covers bytes in other fragments
        layer, i = layer.payload, i + 1

def toward_far(c):
    """What h1 sends to the far network (Ethernet to ferroplane's left port)."""
    e = Ether(src=H1, dst=LEFT)
    if c["inner6"]:
        return e / IPv6(src="2001:db8:1::2", dst="2001:db8:100::7", hlim=64) / UDP(sport=40000, dport=41000) / Raw(PAYLOAD)
    return e / IP(src="10.1.0.2", dst="198.51.100.7", ttl=64, flags="DF", id=7) / UDP(sport=40000, dport=41000) / Raw(PAYLOAD)

def sized(c, l3_len, df=True):
    """A packet from h1 whose IP packet is exactly `l3_len` bytes."""
    e = Ether(src=H1, dst=LEFT)
    if c["inner6"]:
        l3 = IPv6(src="2001:db8:1::2", dst="2001:db8:100::7", hlim=64) / UDP(sport=40001, dport=41000)
    else:
        l3 = IP(src="10.1.0.2", dst="198.51.100.7", ttl=64, flags="DF" if df else 0, id=8) / UDP(sport=40001, dport=41000)
    return e / l3 / Raw(b"m" * (l3_len - len(l3)))

def from_far(c):
    """What the far network sends to h1, as the remote endpoint puts it into the tunnel."""
    if c["inner6"]:
        return IPv6(src="2001:db8:100::7", dst="2001:db8:1::2", hlim=64) / UDP(sport=41000, dport=40000) / Raw(PAYLOAD)
    return IP(src="198.51.100.7", dst="10.1.0.2", ttl=64, id=9) / UDP(sport=41000, dport=40000) / Raw(PAYLOAD)

def decremented(l3):
    """`l3` one router hop later: TTL / hop limit minus one, checksums recomputed."""
    q = l3.copy()
    if isinstance(q, IPv6):
        q.hlim -= 1
    else:
        q.ttl -= 1
        q.chksum = None
    return q.__class__(bytes(q))

def outer(c, inner, vni=None, opts=None, src4="10.2.0.2", critical=0):
    """The remote endpoint's tunnel frame to ferroplane around `inner` (Ethernet for
    VXLAN/Geneve, IP for IPIP)."""
    e = Ether(src=PEER, dst=RIGHT)
    if c["v6"]:
        nh = 17 if c["kind"] != "ipip" else 41 if isinstance(inner, IPv6) else 4
        o = e / IPv6(src="2001:db8:2::2", dst="2001:db8:2::1", hlim=64, nh=nh)
    else:
        o = e / IP(src=src4, dst="10.2.0.1", ttl=64, flags="DF",
                   proto={"geneve": 17, "vxlan": 17}.get(c["kind"], 41 if isinstance(inner, IPv6) else 4))
    vni = c.get("vni") if vni is None else vni
    if c["kind"] == "geneve":
        opts = OPTS if opts is None else opts
        g = GENEVE(vni=vni, proto=0x6558, critical=critical,
                   options=[GeneveOptions(classid=k, type=t, data=d) for k, t, d in opts])
        return o / UDP(sport=50000, dport=6081) / g / inner
    if c["kind"] == "vxlan":
        return o / UDP(sport=50001, dport=4789) / VXLAN(vni=vni, flags=0x08) / inner
    return o / inner

def overlay_eth(c, l3, to_us=True):
    if to_us:
        return Ether(src=c["nbr"], dst=c["mac"]) / l3
    return Ether(src=c["mac"], dst=c["nbr"]) / l3

def check_outer(c, p, what):
    """The outer headers ferroplane wrote; returns the layer after them."""
    check(p.src == RIGHT and p.dst == PEER, "%s: outer MACs %s -> %s" % (what, p.src, p.dst))
    if c["v6"]:
        o = p[IPv6]
        check((o.src, o.dst) == ("2001:db8:2::1", "2001:db8:2::2"), "%s: outer %s -> %s" % (what, o.src, o.dst))
        check(o.hlim == c["ttl"], "%s: outer hop limit %d, configured %d" % (what, o.hlim, c["ttl"]))
        check(o.plen == len(o.payload), "%s: outer payload length %d of %d" % (what, o.plen, len(o.payload)))
        body = o.payload
        proto = o.nh
    else:
        o = p[IP]
        check((o.src, o.dst) == ("10.2.0.1", "10.2.0.2"), "%s: outer %s -> %s" % (what, o.src, o.dst))
        check(o.ttl == c["ttl"], "%s: outer TTL %d, configured %d" % (what, o.ttl, c["ttl"]))
        check(o.flags.DF and not o.flags.MF and o.frag == 0, "%s: outer DF set, not a fragment: %s" % (what, o.flags))
        check(o.len == len(o), "%s: outer total length %d of %d" % (what, o.len, len(o)))
        body = o.payload
        proto = o.proto
    if c["kind"] == "ipip":
        want = 41 if c["inner6"] else 4
        check(proto == want, "%s: outer protocol %d, want %d" % (what, proto, want))
        return body
    check(proto == 17 and isinstance(body, UDP), "%s: outer protocol %d, want UDP" % (what, proto))
    u = body
    check(u.dport == c["dport"], "%s: UDP dst port %d" % (what, u.dport))
    check(49152 <= u.sport <= 65535, "%s: UDP src port %d outside the dynamic range" % (what, u.sport))
    check(u.len == len(u), "%s: UDP length %d of %d" % (what, u.len, len(u)))
    if not c["v6"]:
        check(u.chksum == 0, "%s: IPv4 outer UDP checksum 0x%04x, ferroplane sends zero" % (what, u.chksum))
    else:
        # IPv6: computed (udp_checksum defaults to true); `checksums` compares it with scapy's.
        check(u.chksum != 0, "%s: IPv6 outer UDP checksum zero" % what)
    if c["kind"] == "geneve":
        g = u.payload
        check(isinstance(g, GENEVE), "%s: not Geneve: %r" % (what, u))
        check(g.version == 0 and g.oam == 0 and g.critical == 0 and g.proto == 0x6558,
              "%s: Geneve header %r" % (what, g))
        check(g.vni == c["vni"], "%s: VNI %d" % (what, g.vni))
        got = [(o.classid, o.type, bytes(o.data)) for o in g.options]
        check(got == OPTS, "%s: Geneve options %r, configured %r" % (what, got, OPTS))
        check(g.optionlen == 3, "%s: Geneve option length %d words" % (what, g.optionlen))
        return g.payload
    v = u.payload
    check(isinstance(v, VXLAN), "%s: not VXLAN: %r" % (what, u))
    check(v.flags == 0x08 and v.vni == c["vni"], "%s: VXLAN flags 0x%02x VNI %d" % (what, int(v.flags), v.vni))
    return v.payload

def ov6(c):
    """The overlay's IPv6 prefix: 10.N.0 -> fd00:N::."""
    return "fd00:%s::" % c["ov"].split(".")[1]

def frames(path):
    return [Ether(bytes(p)) for p in rdpcap(path)]

def run(mode, case, F):
    c = T.get(case)
    if mode == "gen-encap":
        wrpcap(F("in"), [at(toward_far(c), 1)])
    elif mode == "check-encap":
        f = frames(F("right"))
        check(len(f) == 1, "%d frames on the underlay port" % len(f))
        p = f[0]
        checksums(p)
        inner = check_outer(c, p, case)
        want = decremented(toward_far(c)[1])
        if c["kind"] != "ipip":
            want = Ether(src=c["mac"], dst=c["nbr"]) / want
        same(inner, want, case + " inner packet")
        print("ok encap", case, p.summary())
    elif mode == "gen-decap":
        l3 = from_far(c)
        inner = l3 if c["kind"] == "ipip" else overlay_eth(c, l3)
        wrpcap(F("in"), [at(outer(c, inner), 1)])
    elif mode == "check-decap":
        f = frames(F("left"))
        check(len(f) == 1, "%d frames towards h1" % len(f))
        checksums(f[0])
        same(f[0], Ether(src=LEFT, dst=H1) / decremented(from_far(c)), case + " decapsulated packet")
        print("ok decap", case, f[0].summary())
    elif mode == "gen-bad":
        g, v, i4 = T["geneve"], T["vxlan"], T["ip4in4"]
        good = overlay_eth(g, from_far(g))
        crit = outer(g, good, opts=[(0x0102, 0x01, b"\x01\x02\x03\x04"), (0x0102, 0x80, b"")], critical=1)
        unknown_vni = outer(g, good, vni=5001)
        # Geneve header cut after 6 bytes, lengths consistent: the datagram itself is short.
        trunc = Ether(src=PEER, dst=RIGHT) / IP(src="10.2.0.2", dst="10.2.0.1", flags="DF") / UDP(sport=50000, dport=6081) / Raw(bytes(GENEVE(vni=5000, proto=0x6558))[:6])
        # Second option claims 8 words of data the options area does not have.
        badopt = outer(g, good, opts=[(0x0102, 0x01, b"\x01\x02\x03\x04")])
        raw = bytearray(bytes(badopt))
        raw[14 + 20 + 8 + 8 + 3] = 0x1f
        badopt = Ether(bytes(raw))
        vx_unknown = outer(v, overlay_eth(v, from_far(v)), vni=101)
        ipip_stranger = outer(i4, from_far(i4), src4="10.2.0.9")
        wrpcap(F("in"), [at(p, 1 + k / 10) for k, p in enumerate(
            [crit, unknown_vni, trunc, badopt, vx_unknown, ipip_stranger, outer(g, good)])])
    elif mode == "gen-arp":
        # h1's packet at t=1; the overlay neighbour's (encapsulated) ARP reply at t=1.1.
        wrpcap(F("in"), [at(toward_far(c), 1)])
        rep = Ether(src=c["nbr"], dst=c["mac"]) / ARP(op=2, hwsrc=c["nbr"], psrc=c["ov"] + ".2", hwdst=c["mac"], pdst=c["ov"] + ".1")
        wrpcap(F("in-right"), [at(outer(c, rep), 1.1)])
    elif mode == "check-arp":
        f = frames(F("right"))
        check(len(f) == 2, "%d frames on the underlay port, want ARP request + released packet: %r" % (len(f), f))
        for p in f:
            checksums(p)
        req = check_outer(c, f[0], case + " ARP request")
        check(req.dst == "ff:ff:ff:ff:ff:ff" and req.src == c["mac"], "inner ARP MACs %s -> %s" % (req.src, req.dst))
        a = req[ARP]
        check(a.op == 1 and a.psrc == c["ov"] + ".1" and a.pdst == c["ov"] + ".2" and a.hwsrc == c["mac"],
              "inner ARP who-has: %r" % a)
        inner = check_outer(c, f[1], case + " released packet")
        same(inner, Ether(src=c["mac"], dst=c["nbr"]) / decremented(toward_far(c)[1]), "released packet")
        print("ok arp", case, f[0].summary(), "|", f[1].summary())
    elif mode == "gen-mtu":
        m, c6 = c["mtu"], dict(c, inner6=True)
        c4 = dict(c, inner6=False)
        wrpcap(F("in"), [at(sized(c4, m), 1), at(sized(c4, m + 1), 2), at(sized(c6, m), 3), at(sized(c6, m + 1), 4),
                         at(sized(c4, m + 1, df=False), 5)])
    elif mode == "check-mtu":
        m = c["mtu"]
        f = frames(F("right"))
        check(len(f) == 4, "%d frames on the underlay port, want the two packets of exactly the MTU and two fragments" % len(f))
        for p, six in zip(f, (False, True)):
            checksums(p)
            inner = check_outer(dict(c, inner6=six), p, "MTU-sized")
            ip = inner[IPv6] if six else inner[IP]
            check(len(ip) == m, "inner %d bytes, want %d" % (len(ip), m))
            o = p[1]
            check(len(o) == 1500, "outer packet %d bytes, want the underlay MTU 1500" % len(o))
        # The DF-clear packet one byte over the MTU: fragmented (RFC 791), then encapsulated.
        frags = []
        for p in f[2:]:
            checksums(p)
            inner = check_outer(dict(c, inner6=False), p, "fragment")
            frags.append(inner[IP])
            check(len(inner[IP]) <= m and len(p[1]) <= 1500, "fragment of %d bytes, MTU %d" % (len(inner[IP]), m))
        want = decremented(sized(c, m + 1, df=False)[1])
        frags.sort(key=lambda x: x.frag)
        check([x.flags.MF for x in frags] == [True, False] and all(x.id == want.id for x in frags), "fragments %r" % frags)
        check(frags[0].frag == 0 and frags[1].frag * 8 == len(frags[0].payload), "fragment offsets %r" % frags)
        data = b"".join(bytes(x.payload) for x in frags)
        check(data == bytes(want.payload), "fragments do not reassemble to the packet")
        check(all(x.ttl == 63 and x.src == want.src and x.dst == want.dst for x in frags), "fragment headers %r" % frags)
        back = frames(F("left"))
        check(len(back) == 2, "%d frames back to h1, want frag-needed and packet-too-big" % len(back))
        e4, e6 = back
        checksums(e4)
        checksums(e6)
        check(e4.src == LEFT and e4.dst == H1 and e4[IP].src == "10.1.0.1" and e4[IP].dst == "10.1.0.2", "frag-needed addresses %r" % e4)
        i = e4[ICMP]
        check((i.type, i.code, i.nexthopmtu) == (3, 4, m), "frag-needed type %d code %d next-hop MTU %s, want 3/4/%d" % (i.type, i.code, i.nexthopmtu, m))
        q = e4[IPerror]
        check(q.src == "10.1.0.2" and q.dst == "198.51.100.7" and q.len == m + 1, "quoted header %r" % q)
        check(e6.src == LEFT and e6.dst == H1 and e6[IPv6].src == "2001:db8:1::1" and e6[IPv6].dst == "2001:db8:1::2", "packet-too-big addresses %r" % e6)
        ptb = e6[ICMPv6PacketTooBig]
        check(ptb.mtu == m, "packet-too-big MTU %d, want %d" % (ptb.mtu, m))
        check(ptb.payload.src == "2001:db8:1::2" and ptb.payload.plen == m + 1 - 40, "quoted packet %r" % ptb.payload)
        print("ok mtu", case, m)
    elif mode == "gen-slow":
        # From the far network through the tunnel: an echo request to ferroplane's overlay
        # address, and a packet for h1 with TTL / hop limit 1.
        if c["inner6"]:
            ping = IPv6(src="2001:db8:100::7", dst=ov6(c) + "1") / ICMPv6EchoRequest(id=0x77, seq=3, data=b"ping")
            late = IPv6(src="2001:db8:100::7", dst="2001:db8:1::2", hlim=1) / UDP(sport=41000, dport=40000) / Raw(b"late")
        else:
            ping = IP(src="198.51.100.7", dst=c["ov"] + ".1") / ICMP(id=0x77, seq=3) / Raw(b"ping")
            late = IP(src="198.51.100.7", dst="10.1.0.2", ttl=1) / UDP(sport=41000, dport=40000) / Raw(b"late")
        wrap = (lambda l3: l3) if c["kind"] == "ipip" else (lambda l3: overlay_eth(c, l3))
        wrpcap(F("in"), [at(outer(c, wrap(ping)), 1), at(outer(c, wrap(late)), 2)])
    elif mode == "check-slow":
        f = frames(F("right"))
        check(len(f) == 2, "%d frames back into the tunnel, want echo reply + time exceeded: %r" % (len(f), f))
        me = ov6(c) + "1" if c["inner6"] else c["ov"] + ".1"
        for p, what in zip(f, ("echo reply", "time exceeded")):
            checksums(p)
            inner = check_outer(c, p, what)
            if c["kind"] != "ipip":
                check((inner.src, inner.dst) == (c["mac"], c["nbr"]), "%s: inner MACs %r" % (what, inner))
            l3 = inner[IPv6] if c["inner6"] else inner[IP]
            check((l3.src, l3.dst) == (me, "2001:db8:100::7" if c["inner6"] else "198.51.100.7"), "%s: %r" % (what, l3))
        if c["inner6"]:
            r, e = f[0][ICMPv6EchoReply], f[1][ICMPv6TimeExceeded]
            check((r.id, r.seq, bytes(r.data)) == (0x77, 3, b"ping"), "echo reply %r" % r)
            check(e.code == 0 and e.payload.dst == "2001:db8:1::2", "time exceeded %r" % e)
        else:
            r, e = f[0][ICMP], f[1][ICMP]
            check((r.type, r.code, r.id, r.seq, bytes(r.payload)) == (0, 0, 0x77, 3, b"ping"), "echo reply %r" % r)
            check((e.type, e.code) == (11, 0) and f[1][IPerror].dst == "10.1.0.2", "time exceeded %r" % e)
        print("ok slow", case)
    else:
        fail("unknown mode " + mode)

# argv: MODE DIR NAME...; NAME is a case, or CASE@PREFIX; files are DIR/PREFIX.{in,in-right,left,right}.pcap.
mode, d = sys.argv[1], sys.argv[2]
for name in sys.argv[3:]:
    case, _, prefix = name.partition("@")
    run(mode, case, lambda n, p=prefix or case: os.path.join(d, "%s.%s.pcap" % (p, n)))
"#;

/// Runs the scapy script with `args`; panics with its output unless it succeeded.
fn scapy(args: &[&str]) -> String {
    let out =
        Command::new("python3").arg("-c").arg(SCAPY).args(args).output().expect("run python3");
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "scapy {args:?}:\n{text}");
    text
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// What one replay printed, with its drop counters.
struct Replayed {
    stdout: String,
    drops: HashMap<String, u64>,
}

/// `ferroplane replay` over `cfg` with `--in`/`--out` PORT=FILE pairs.
fn replay(dir: &Path, cfg: &str, ins: &[(&str, &Path)], outs: &[(&str, &Path)]) -> Replayed {
    let exe = workspace_bin("ferroplane");
    assert!(
        exe.exists(),
        "{} missing: run `cargo build --workspace --bins` first (test.sh does)",
        exe.display()
    );
    let c = dir.join("router.toml");
    std::fs::write(&c, cfg).unwrap();
    let mut cmd = Command::new(exe);
    cmd.arg("replay").arg("-c").arg(&c);
    for (port, f) in ins {
        cmd.arg(format!("--in={port}={}", f.display()));
    }
    for (port, f) in outs {
        cmd.arg(format!("--out={port}={}", f.display()));
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "replay failed: {}\n{stdout}\nconfig:\n{cfg}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The summary ends with "drops:" and one "  name count" line per non-zero reason.
    let mut drops = HashMap::new();
    if let Some((_, tail)) = stdout.split_once("drops:\n") {
        for l in tail.lines() {
            let mut w = l.split_whitespace();
            if let (Some(n), Some(v)) = (w.next(), w.next().and_then(|v| v.parse().ok())) {
                drops.insert(n.to_string(), v);
            }
        }
    }
    Replayed { stdout, drops }
}

/// tshark's full dissection of `pcap`: no malformed packet, no expert error (checksums checked);
/// returns each frame's protocol stack (`eth:ethertype:ip:udp:geneve:...`).
fn tshark_clean(pcap: &Path) -> Vec<String> {
    tshark_check(pcap, true)
}

/// [`tshark_clean`]; `no_warnings` also refuses expert warnings (a live capture may hold an
/// echo request whose reply was not captured, which tshark flags as a warning).
fn tshark_check(pcap: &Path, no_warnings: bool) -> Vec<String> {
    let prefs = [
        "-o",
        "ip.check_checksum:TRUE",
        "-o",
        "udp.check_checksum:TRUE",
        "-o",
        "tcp.check_checksum:TRUE",
    ];
    let out = Command::new("tshark").arg("-r").arg(pcap).args(prefs).arg("-V").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "tshark: {}", String::from_utf8_lossy(&out.stderr));
    let bad: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.contains("Malformed")
                || l.contains("Expert Info (Error")
                || (no_warnings && l.contains("Expert Info (Warning"))
        })
        .collect();
    assert!(bad.is_empty(), "tshark flags {}:\n{}\n\n{text}", pcap.display(), bad.join("\n"));
    let out = Command::new("tshark")
        .arg("-r")
        .arg(pcap)
        .args(prefs)
        .args(["-T", "fields", "-e", "frame.protocols"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

/// The protocol stack tshark must show for a data packet of `case` on the underlay.
fn stack(case: &str) -> &'static str {
    match case {
        "geneve" => "eth:ethertype:ip:udp:geneve:eth:ethertype:ip:udp:data",
        "vxlan" => "eth:ethertype:ip:udp:vxlan:eth:ethertype:ip:udp:data",
        "geneve6" => "eth:ethertype:ipv6:udp:geneve:eth:ethertype:ipv6:udp:data",
        "ip4in4" => "eth:ethertype:ip:ip:udp:data",
        "ip6in4" => "eth:ethertype:ip:ipv6:udp:data",
        "ip4in6" => "eth:ethertype:ipv6:ip:udp:data",
        "ip6in6" => "eth:ethertype:ipv6:ipv6:udp:data",
        _ => unreachable!(),
    }
}

/// Geneve over IPv4 and (carrying IPv6, with the outer UDP checksum) over IPv6, VXLAN, and the
/// four IP-in-IP kinds.
const CASES: [&str; 7] = ["geneve", "geneve6", "vxlan", "ip4in4", "ip6in4", "ip4in6", "ip6in6"];

fn require_peers() {
    require_scapy();
    require_tool("tshark", "apt-get install tshark");
}

/// `DIR/PREFIX.NAME.pcap`, as the scapy script names its files.
fn file(dir: &Path, prefix: &str, name: &str) -> PathBuf {
    dir.join(format!("{prefix}.{name}.pcap"))
}

fn paths(dir: &Path) -> String {
    s(dir).to_string()
}

#[test]
fn replay_encap_each_kind_checked_by_scapy_and_tshark() {
    require_peers();
    let dir = scratch_dir("tun-encap");
    let d = paths(&dir);
    scapy(&[&["gen-encap", d.as_str()][..], &CASES].concat());
    for case in CASES {
        let t = tunnel_of(case);
        let r = replay(
            &dir,
            &config(&(tunnel_toml(t, true) + &routes_into(t))),
            &[("left", &file(&dir, case, "in"))],
            &[("right", &file(&dir, case, "right")), ("left", &file(&dir, case, "left"))],
        );
        assert!(r.drops.is_empty(), "{case}: drops\n{}", r.stdout);
        assert_eq!(tshark_clean(&file(&dir, case, "right")), vec![stack(case)], "{case}");
    }
    let out = scapy(&[&["check-encap", d.as_str()][..], &CASES].concat());
    assert_eq!(out.matches("ok encap").count(), CASES.len(), "{out}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn replay_decap_each_kind_checked_by_scapy_and_tshark() {
    require_peers();
    let dir = scratch_dir("tun-decap");
    let d = paths(&dir);
    scapy(&[&["gen-decap", d.as_str()][..], &CASES].concat());
    for case in CASES {
        let input = file(&dir, case, "in");
        // The frame scapy built is itself well-formed for tshark (a check on the test).
        assert_eq!(tshark_clean(&input), vec![stack(case)], "{case} input");
        let t = tunnel_of(case);
        let r = replay(
            &dir,
            &config(&tunnel_toml(t, true)),
            &[("right", &input)],
            &[("left", &file(&dir, case, "left"))],
        );
        assert!(r.drops.is_empty(), "{case}: drops\n{}", r.stdout);
        let back = tshark_clean(&file(&dir, case, "left"));
        assert_eq!(back.len(), 1, "{case}: {back:?}\n{}", r.stdout);
    }
    let out = scapy(&[&["check-decap", d.as_str()][..], &CASES].concat());
    assert_eq!(out.matches("ok decap").count(), CASES.len(), "{out}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn replay_bad_tunnel_input_is_dropped_and_counted() {
    require_peers();
    let dir = scratch_dir("tun-bad");
    let d = paths(&dir);
    // Geneve with a critical option, Geneve and VXLAN with unknown VNIs, IPIP from an unknown
    // source, a Geneve header cut short, an option running past the options, then a good one.
    scapy(&["gen-bad", &d, "geneve@bad"]);
    let (left, right) = (file(&dir, "bad", "left"), file(&dir, "bad", "right"));
    let body = tunnel_toml("gnv0", true) + &tunnel_toml("vx0", true) + &tunnel_toml("ip4", true);
    let r = replay(
        &dir,
        &config(&body),
        &[("right", &file(&dir, "bad", "in"))],
        &[("left", &left), ("right", &right)],
    );
    assert!(r.stdout.contains("replayed 7 frames"), "{}", r.stdout);
    let want: HashMap<String, u64> = [
        ("geneve_critical_option", 1),
        ("tunnel_unknown", 3),
        ("tunnel_truncated", 1),
        ("geneve_bad_option", 1),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(r.drops, want, "{}", r.stdout);
    // The good Geneve frame after the bad ones still goes through, and nothing else leaves.
    scapy(&["check-decap", &d, "geneve@bad"]);
    assert_eq!(tshark_clean(&right).len(), 0, "nothing back to the underlay\n{}", r.stdout);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn replay_overlay_arp_resolves_the_neighbour_inside_the_tunnel() {
    require_peers();
    let dir = scratch_dir("tun-arp");
    let d = paths(&dir);
    let cases = ["vxlan", "geneve"];
    scapy(&[&["gen-arp", d.as_str()][..], &cases].concat());
    for case in cases {
        // No static overlay neighbour: ferroplane ARPs inside the tunnel.
        let t = tunnel_of(case);
        let right = file(&dir, case, "right");
        let r = replay(
            &dir,
            &config(&(tunnel_toml(t, false) + &routes_into(t))),
            &[("left", &file(&dir, case, "in")), ("right", &file(&dir, case, "in-right"))],
            &[("right", &right)],
        );
        assert!(r.drops.is_empty(), "{case}: drops\n{}", r.stdout);
        let arp = format!("eth:ethertype:ip:udp:{case}:eth:ethertype:arp");
        assert_eq!(tshark_clean(&right), vec![arp.as_str(), stack(case)], "{case}\n{}", r.stdout);
    }
    let out = scapy(&[&["check-arp", d.as_str()][..], &cases].concat());
    assert_eq!(out.matches("ok arp").count(), 2, "{out}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn replay_too_big_for_the_tunnel_mtu_gets_frag_needed_and_packet_too_big() {
    require_peers();
    let dir = scratch_dir("tun-mtu");
    let d = paths(&dir);
    // Geneve with 12 bytes of options: 1500 - 62 = 1438; IPIP over IPv6: 1500 - 40 = 1460.
    // Per tunnel: IPv4 and IPv6 packets of exactly the MTU pass, one byte more bounces (DF set)
    // or is fragmented (DF clear).
    let cases = ["geneve", "ip4in6"];
    scapy(&[&["gen-mtu", d.as_str()][..], &cases].concat());
    for case in cases {
        let t = tunnel_of(case);
        let (left, right) = (file(&dir, case, "left"), file(&dir, case, "right"));
        let r = replay(
            &dir,
            &config(&(tunnel_toml(t, true) + &routes_into(t))),
            &[("left", &file(&dir, case, "in"))],
            &[("left", &left), ("right", &right)],
        );
        assert_eq!(tshark_clean(&right).len(), 4, "{case}\n{}", r.stdout);
        let back = tshark_clean(&left);
        assert_eq!(back.len(), 2, "{back:?}\n{}", r.stdout);
        assert!(back[0].starts_with("eth:ethertype:ip:icmp:ip:udp"), "{back:?}");
        assert!(back[1].starts_with("eth:ethertype:ipv6:icmpv6:ipv6:udp"), "{back:?}");
    }
    let out = scapy(&[&["check-mtu", d.as_str()][..], &cases].concat());
    assert_eq!(out.matches("ok mtu").count(), 2, "{out}");
    let _ = std::fs::remove_dir_all(dir);
}

/// The far end of a live tunnel, in h2: reads h2's eth0 through an AF_PACKET socket, checks each
/// Geneve/IPIP frame ferroplane sends (outer fields, VNI, options, inner TTL) and answers what is
/// inside: ARP requests for the overlay peer 10.200.0.2 (Geneve: ferroplane resolves it through
/// the tunnel) and ICMP / ICMPv6 echo requests, with encapsulated replies. Bounded by `SECS` and
/// `MAX` replies; prints one flushed line per frame (`request ...`, `arp ...`, `bad ...`), so a
/// kill loses nothing. argv: KIND (geneve|ipip) IFNAME ROUTER_MAC SECS MAX.
const RESPONDER: &str = r#"
import socket, sys, time
from scapy.all import Ether, IP, UDP, ICMP, ARP, Raw
from scapy.layers.inet6 import IPv6, ICMPv6EchoRequest, ICMPv6EchoReply
from scapy.contrib.geneve import GENEVE, GeneveOptions

kind, ifname, router_mac, secs, most = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5])
my_mac = open("/sys/class/net/%s/address" % ifname).read().strip()
PEER_MAC = "02:00:00:00:c8:02"  # the overlay peer's MAC behind the Geneve tunnel
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind((ifname, 0))
s.settimeout(0.2)
# h2's kernel has no Geneve or IPIP: with a socket on the Geneve port and raw IPIP sockets it
# sends no port / protocol unreachable for the frames this script answers.
quiet = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
quiet.bind(("10.2.0.2", 6081))
quiet4 = socket.socket(socket.AF_INET, socket.SOCK_RAW, 4)
quiet41 = socket.socket(socket.AF_INET, socket.SOCK_RAW, 41)
OPTS = [(0x0102, 0x01, bytes.fromhex("0a0b0c0d")), (0xffff, 0x22, b"")]
print("ready", my_mac, flush=True)

def say(*a):
    print(*a, flush=True)

deadline, replies = time.time() + secs, 0
while time.time() < deadline and replies < most:
    try:
        data, a = s.recvfrom(65535)
    except socket.timeout:
        continue
    if a[2] == socket.PACKET_OUTGOING:
        continue
    p = Ether(data)
    if IP not in p or p[IP].dst != "10.2.0.2":
        continue
    o, bad = p[IP], []
    if (p.dst, o.src, o.ttl, o.flags.DF, o.frag) != (my_mac, "10.2.0.1", 64, True, 0):
        bad.append("outer %s %r" % (p.dst, o))
    if kind == "geneve":
        if UDP not in p or p[UDP].dport != 6081:
            continue
        g = p[GENEVE]
        if (g.vni, g.proto, g.critical, g.oam) != (7000, 0x6558, 0, 0):
            bad.append("geneve header %r" % g)
        got = [(x.classid, x.type, bytes(x.data)) for x in g.options]
        if got != OPTS:
            bad.append("options %r" % got)
        if not 49152 <= p[UDP].sport <= 65535 or p[UDP].chksum != 0:
            bad.append("UDP %r" % p[UDP])
        ie = g.payload
        inner = ie.payload
    else:
        if o.proto not in (4, 41):
            continue
        ie, inner = None, o.payload
    for b in bad:
        say("bad", b)
    e = Ether(src=my_mac, dst=router_mac) / IP(src="10.2.0.2", dst="10.2.0.1", ttl=64, flags="DF")
    if kind == "geneve":
        g = GENEVE(vni=7000, proto=0x6558, options=[GeneveOptions(classid=0x0102, type=0x01, data=b"\x01\x02\x03\x04")])
        e = e / UDP(sport=p[UDP].sport, dport=6081, chksum=0) / g / Ether(src=PEER_MAC, dst=ie.src)
    if isinstance(inner, ARP):
        q = inner
        if q.op != 1 or q.pdst != "10.200.0.2":
            say("other", p.summary())
            continue
        if (ie.dst, ie.src, q.hwsrc, q.psrc) != ("ff:ff:ff:ff:ff:ff", "02:00:00:00:c8:01", "02:00:00:00:c8:01", "10.200.0.1"):
            say("bad", "ARP request %r" % ie)
        say("arp who-has", q.pdst, "tell", q.psrc)
        s.send(bytes(e / ARP(op=2, hwsrc=PEER_MAC, psrc=q.pdst, hwdst=q.hwsrc, pdst=q.psrc)))
        continue
    if kind == "geneve" and (ie.src, ie.dst) != ("02:00:00:00:c8:01", PEER_MAC):
        say("bad", "inner MACs %s -> %s" % (ie.src, ie.dst))
    if isinstance(inner, IP) and ICMP in inner and inner[ICMP].type == 8:
        if inner.ttl != 63:
            say("bad", "inner TTL %d" % inner.ttl)
        i = inner[ICMP]
        back = IP(src=inner.dst, dst=inner.src, ttl=64) / ICMP(type=0, id=i.id, seq=i.seq) / Raw(bytes(i.payload))
    elif isinstance(inner, IPv6) and ICMPv6EchoRequest in inner:
        if inner.hlim != 63:
            say("bad", "inner hop limit %d" % inner.hlim)
        i = inner[ICMPv6EchoRequest]
        back = IPv6(src=inner.dst, dst=inner.src, hlim=64) / ICMPv6EchoReply(id=i.id, seq=i.seq, data=i.data)
    else:
        say("other", p.summary())
        continue
    say("request", inner.src, inner.dst, inner.payload.seq)
    if kind == "ipip":
        e[IP].proto = 41 if isinstance(back, IPv6) else 4
    s.send(bytes(e / back))
    replies += 1
say("done", replies)
"#;

/// Configuration appended to the live bed's: a Geneve tunnel (two options; no static overlay
/// neighbour, so ferroplane ARPs through the tunnel) or an IPIP tunnel (IPv4 and IPv6 inside)
/// from the router's right port to h2.
fn live_tunnel(kind: &str) -> &'static str {
    match kind {
        "geneve" => {
            r#"
[[tunnel]]
name = "gnv0"
kind = "geneve"
local = "10.2.0.1"
remote = "10.2.0.2"
vni = 7000
mac = "02:00:00:00:c8:01"
addresses = ["10.200.0.1/24"]
options = [{ class = 0x0102, type = 0x01, data = "0a0b0c0d" }, { class = 0xffff, type = 0x22 }]
"#
        }
        _ => {
            r#"
[[tunnel]]
name = "ipip0"
kind = "ipip"
local = "10.2.0.1"
remote = "10.2.0.2"
addresses = ["10.201.0.1/24", "fd00:201::1/64"]
"#
        }
    }
}

/// h1 pings each of `far` through a `kind` tunnel whose remote end is [`RESPONDER`] in h2; a
/// tshark capture on h2's eth0 must dissect every frame, `stack` being the tunnelled ones.
fn live_ping_through(kind: &str, far: &[&str], stack: &str) {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    require_peers();
    let tunnel = live_tunnel(kind);
    let b = bed_with(&kind[..1], &[1], 1, &|c| c + tunnel);
    let t = &b.topo;
    let router_mac = t.router_mac(&t.right).unwrap();
    let cap = b.dir.join("h2.pcap");
    let mut tshark = Command::new("ip")
        .args(["netns", "exec", &t.h2, "tshark", "-q", "-i", &t.h2_if, "-F", "pcap", "-a"])
        .arg("duration:60")
        .arg("-w")
        .arg(&cap)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tshark");
    let start = Instant::now();
    while std::fs::metadata(&cap).map_or(0, |m| m.len()) < 24 {
        if start.elapsed() > Duration::from_secs(20) {
            stop_gracefully(&mut tshark);
            panic!("tshark did not start capturing on h2");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    let mut responder = Command::new("ip")
        .args(["netns", "exec", &t.h2, "python3", "-c", RESPONDER, kind, &t.h2_if, &router_mac])
        .args(["60", "100"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the responder");
    let mut lines = BufReader::new(responder.stdout.take().unwrap());
    let mut ready = String::new();
    lines.read_line(&mut ready).unwrap();
    let (mut pings, mut mtu) = (Vec::new(), Vec::new());
    if ready.starts_with("ready") {
        for dst in far {
            let v6 = if dst.contains(':') { "-6" } else { "-4" };
            pings.push(sh(&t.h1, &["ping", v6, "-c", "5", "-i", "0.2", "-W", "2", dst]));
        }
        if kind == "geneve" {
            // The tunnel MTU, 1500 - 62 (two options: 12 bytes): a 1438-byte packet with DF
            // passes, one byte more gets frag-needed with that MTU, which h1's kernel reads.
            for size in ["1410", "1411"] {
                let args = ["ping", "-4", "-c", "2", "-i", "0.2", "-W", "2", "-M", "do", "-s"];
                mtu.push(sh(&t.h1, &[&args[..], &[size, far[0]]].concat()));
            }
        }
    }
    // The responder is bounded by its own deadline too; stop it now, by its PID (`ip netns
    // exec` execs python3).
    // SAFETY: kill(2) on a child we spawned and have not reaped.
    unsafe { libc::kill(responder.id() as i32, libc::SIGTERM) };
    let _ = responder.wait();
    let mut log = ready.clone();
    lines.read_to_string(&mut log).unwrap();
    let mut err = String::new();
    responder.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    // dumpcap writes what it has on SIGINT; give the last reply time to reach it first.
    std::thread::sleep(Duration::from_millis(1000));
    stop_gracefully(&mut tshark);
    let ctx = format!(
        "responder:\n{log}{err}\nstats: {:?}\nrouter log:\n{}",
        stats(&b),
        b.router.log_text()
    );
    assert!(ready.starts_with("ready"), "responder did not start\n{ctx}");
    for (dst, ping) in far.iter().zip(&pings) {
        assert!(ping.contains("5 received, 0% packet loss"), "ping {dst} from h1:\n{ping}\n{ctx}");
        // The reply's inner TTL 64, one router hop after the tunnel.
        assert!(ping.contains("ttl=63"), "{ping}");
        let seen = log.lines().filter(|l| l.starts_with("request") && l.contains(dst)).count();
        assert!(seen >= 5, "{seen} echo requests for {dst} at the far end\n{ctx}");
    }
    assert!(!log.contains("bad "), "frames ferroplane sent into the tunnel\n{ctx}");
    if kind == "geneve" {
        assert!(log.contains("arp who-has 10.200.0.2 tell 10.200.0.1"), "overlay ARP\n{ctx}");
        assert!(mtu[0].contains("2 received, 0% packet loss"), "{}\n{ctx}", mtu[0]);
        assert!(
            mtu[1].contains("Frag needed and DF set (mtu = 1438)") || mtu[1].contains("mtu=1438"),
            "{}\n{ctx}",
            mtu[1]
        );
    }
    // tshark saw the requests and the replies, as tunnel frames, and nothing malformed.
    let frames = tshark_check(&cap, false);
    let tunnelled = frames.iter().filter(|f| f.starts_with(stack)).count();
    assert!(tunnelled >= 10 * far.len(), "{tunnelled} frames of {stack} in {frames:#?}\n{ctx}");
}

#[test]
fn live_geneve_ping_through_a_scapy_peer() {
    live_ping_through(
        "geneve",
        &["10.200.0.2"],
        "eth:ethertype:ip:udp:geneve:eth:ethertype:ip:icmp",
    );
}

#[test]
fn live_ipip_ping_through_a_scapy_peer() {
    // IPv4-in-IPv4 and IPv6-in-IPv4 over one tunnel.
    live_ping_through("ipip", &["10.201.0.2", "fd00:201::2"], "eth:ethertype:ip:ip");
}

#[test]
fn replay_slow_path_answers_go_back_through_the_tunnel() {
    require_peers();
    let dir = scratch_dir("tun-slow");
    let d = paths(&dir);
    // Echo replies from the overlay address and ICMP errors for packets that came out of the
    // tunnel are sent by the slow path and encapsulated by the worker.
    let cases = ["geneve", "vxlan", "ip4in4", "ip6in6"];
    scapy(&[&["gen-slow", d.as_str()][..], &cases].concat());
    for case in cases {
        let t = tunnel_of(case);
        let right = file(&dir, case, "right");
        let r = replay(
            &dir,
            &config(&(tunnel_toml(t, true) + &routes_into(t))),
            &[("right", &file(&dir, case, "in"))],
            &[("right", &right), ("left", &file(&dir, case, "left"))],
        );
        assert_eq!(tshark_clean(&right).len(), 2, "{case}\n{}", r.stdout);
    }
    let out = scapy(&[&["check-slow", d.as_str()][..], &cases].concat());
    assert_eq!(out.matches("ok slow").count(), cases.len(), "{out}");
    let _ = std::fs::remove_dir_all(dir);
}
