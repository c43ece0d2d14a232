//! ferroplane's VXLAN tunnel against the Linux kernel's own `vxlan` device: a real peer written
//! by others. The router runs `ferroplane run` on AF_XDP with a point-to-point VXLAN tunnel from
//! its right port to h2, where the kernel terminates the tunnel on a `vxlan` device. Behind it h2
//! has networks (10.200.0.2, fd00:200::2 on its loopback) that ferroplane reaches only through the
//! tunnel, and h2 reaches h1 only through it too, so every packet below crosses the tunnel in
//! both directions: ARP and ND on the overlay, ICMP, and TCP with path MTU discovery (the
//! tunnel's MTU is 1450, h1's link 1500).

use std::time::Duration;

use ferroplane_ctl::{call, Reply, Request};
use ferroplane_dataplane::netns::addr;
use ferroplane_testbed::live::{
    bed_with, kernel_vxlan, must, port, sh, stats, tcp_transfer, Bed, SERIAL,
};

const TUNNEL: &str = r#"
[[tunnel]]
name = "vx0"
kind = "vxlan"
local = "10.2.0.1"
remote = "10.2.0.2"
vni = 100
addresses = ["10.100.0.1/24", "fd00:100::1/64"]

[[route]]
prefix = "10.200.0.0/24"
nexthops = [{ via = "10.100.0.2" }]

[[route]]
prefix = "fd00:200::/64"
nexthops = [{ via = "fd00:100::2" }]
"#;

/// The router with the tunnel, and h2's kernel end of it.
fn vxlan_bed(tag: &str) -> Bed {
    let b = bed_with(tag, &[1], 1, &|c| c + TUNNEL);
    let h2 = &b.topo.h2;
    let dev = &b.topo.h2_if;
    let run = |args: &[&str]| must(h2, args);
    kernel_vxlan(h2, "vx0", "100", (addr::H2_V4, addr::R_RIGHT_V4), dev, "10.100.0.2/24");
    run(&["ip", "-6", "addr", "add", "fd00:100::2/64", "dev", "vx0", "nodad"]);
    run(&["ip", "addr", "add", "10.200.0.2/32", "dev", "lo"]);
    run(&["ip", "-6", "addr", "add", "fd00:200::2/128", "dev", "lo"]);
    // h1's networks only through the tunnel.
    run(&["ip", "route", "add", "10.1.0.0/24", "via", "10.100.0.1", "dev", "vx0"]);
    run(&["ip", "-6", "route", "add", "2001:db8:1::/64", "via", "fd00:100::1", "dev", "vx0"]);
    b
}

fn ping(ns: &str, args: &[&str]) -> String {
    let mut a = vec!["ping", "-c", "3", "-i", "0.2", "-W", "2"];
    a.extend_from_slice(args);
    sh(ns, &a)
}

#[test]
fn ping_through_the_tunnel_both_ways_with_the_kernel_vxlan_device() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let b = vxlan_bed("vp");
    let t = &b.topo;
    let cases: [(&str, Vec<&str>, &str); 6] = [
        // h1 -> h2's network behind the tunnel: routed into vx0, one router hop.
        (&t.h1, vec!["10.200.0.2"], "ttl=63"),
        (&t.h1, vec!["-6", "fd00:200::2"], "ttl=63"),
        // h2 -> h1 from behind the tunnel: decapsulated by ferroplane, routed to h1.
        (&t.h2, vec!["-I", "10.200.0.2", addr::H1_V4], "ttl=63"),
        (&t.h2, vec!["-I", "fd00:200::2", addr::H1_V6], "ttl=63"),
        // ferroplane's own overlay addresses: ARP/ND and echo over the tunnel.
        (&t.h2, vec!["10.100.0.1"], "ttl=64"),
        (&t.h2, vec!["-6", "fd00:100::1"], "ttl=64"),
    ];
    for (ns, args, ttl) in &cases {
        let out = ping(ns, args);
        assert!(
            out.contains(" 0% packet loss") && out.contains(ttl),
            "ping {args:?} from {ns}:\n{out}\nrouter log:\n{}",
            b.router.log_text()
        );
    }
    // The kernel learned ferroplane's overlay MAC from its ARP reply / NA on the tunnel.
    let tunnels = match call(&b.router.socket, Request::TunnelShow) {
        Ok(Reply::Tunnels { tunnels }) => tunnels,
        other => panic!("tunnel show: {other:?}"),
    };
    let mac = tunnels[0].mac.clone().expect("vxlan tunnel has a MAC");
    let neigh = sh(&t.h2, &["ip", "neigh", "show", "dev", "vx0"]);
    assert!(neigh.contains(&format!("10.100.0.1 lladdr {mac}")), "ARP over vxlan: {neigh}");
    assert!(neigh.contains(&format!("fd00:100::1 lladdr {mac}")), "ND over vxlan: {neigh}");
    assert_eq!(tunnels[0].mtu, 1450, "1500 minus 50 bytes of VXLAN over IPv4");
    let s = stats(&b);
    // Everything toward h2 left as VXLAN on the right port; nothing was dropped as a tunnel
    // error.
    assert!(port(&s, "right").tx_packets >= 12, "{:?}", s.ports);
    for w in &s.workers {
        for (reason, n) in &w.drops {
            assert!(
                !(reason.starts_with("tunnel")
                    || reason.starts_with("geneve")
                    || reason == "fdb_miss")
                    || *n == 0,
                "{reason} = {n}"
            );
        }
    }
}

#[test]
fn tcp_100_mb_through_the_tunnel_both_directions_with_path_mtu_discovery() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let b = vxlan_bed("vt");
    let t = &b.topo;
    // Warm up neighbours on both sides of the tunnel.
    ping(&t.h1, &["10.200.0.2"]);
    let total: u64 = 100 * 1024 * 1024;
    for (from, to, to_addr) in [(&t.h1, &t.h2, "10.200.0.2"), (&t.h2, &t.h1, addr::H1_V4)] {
        let (sent, got) = tcp_transfer(from, to, to_addr, total);
        assert!(sent.starts_with(&total.to_string()), "sender {from}: {sent}");
        assert_eq!(
            got,
            sent,
            "{from} -> {to_addr}: bytes or digest differ\nrouter log:\n{}",
            b.router.log_text()
        );
    }
    // TCP fitted itself to the tunnel through h2's MSS; a 1500-byte DF datagram from h1 does
    // not fit the 1450-byte tunnel: ferroplane answers fragmentation needed with the tunnel's
    // MTU, and h1 caches it as the path MTU.
    let out = sh(&t.h1, &["ping", "-M", "do", "-s", "1472", "-c", "2", "-W", "2", "10.200.0.2"]);
    assert!(out.contains("mtu = 1450") || out.contains("mtu=1450"), "DF ping: {out}");
    let s = stats(&b);
    assert!(s.slow_path["icmp_errors"] >= 1, "{:?}", s.slow_path);
    let pmtu = sh(&t.h1, &["ip", "route", "get", "10.200.0.2"]);
    assert!(pmtu.contains("mtu 1450"), "h1's route cache: {pmtu}");
    let out = sh(&t.h1, &["ping", "-M", "do", "-s", "1422", "-c", "2", "-W", "2", "10.200.0.2"]);
    assert!(out.contains(" 0% packet loss"), "1450-byte DF ping: {out}");
    // 100 MB each way as ~1400-byte segments, all carried by the tunnel, and counted on it.
    assert!(port(&s, "right").tx_packets > 70_000, "{:?}", s.ports);
    let vx = s.tunnels.iter().find(|t| t.name == "vx0").expect("vx0 in stats");
    assert!(vx.tx_packets > 70_000 && vx.rx_packets > 70_000, "{:?}", s.tunnels);
    assert!(vx.tx_bytes > 100 * 1024 * 1024 && vx.rx_bytes > 100 * 1024 * 1024, "{vx:?}");
    assert!(port(&s, "right").rx_packets > 70_000, "{:?}", s.ports);
    std::thread::sleep(Duration::from_millis(100));
}

fn fpctl(b: &Bed, args: &[&str]) -> String {
    let o = std::process::Command::new(ferroplane_testbed::workspace_bin("fpctl"))
        .arg("--socket")
        .arg(&b.router.socket)
        .args(args)
        .output()
        .expect("fpctl");
    let text =
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "fpctl {args:?}: {text}");
    text
}

/// A multipoint tunnel added at run time: the kernel end floods to ferroplane through its
/// all-zeros FDB entry, ferroplane floods to h2 through its own and learns h2's vxlan MAC
/// from the first decapsulated frame. Then the tunnel goes away again.
#[test]
fn multipoint_tunnel_added_at_run_time_learns_the_kernel_vtep_and_is_deleted() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let b = bed_with("vm", &[1], 1, &|c| c);
    let (h2, dev) = (&b.topo.h2, &b.topo.h2_if);
    let run = |args: &[&str]| must(h2, args);
    run(&[
        "ip",
        "link",
        "add",
        "vx0",
        "type",
        "vxlan",
        "id",
        "7",
        "local",
        addr::H2_V4,
        "dstport",
        "4789",
        "nolearning",
        "dev",
        dev,
    ]);
    run(&["bridge", "fdb", "append", "00:00:00:00:00:00", "dev", "vx0", "dst", addr::R_RIGHT_V4]);
    run(&["ip", "addr", "add", "10.107.0.2/24", "dev", "vx0"]);
    run(&["ip", "link", "set", "vx0", "up"]);
    run(&["ip", "addr", "add", "10.200.0.2/32", "dev", "lo"]);
    run(&["ip", "route", "add", "10.1.0.0/24", "via", "10.107.0.1", "dev", "vx0"]);
    let out = fpctl(
        &b,
        &[
            "tunnel",
            "add",
            "mp0",
            "kind",
            "vxlan",
            "local",
            addr::R_RIGHT_V4,
            "vni",
            "7",
            "address",
            "10.107.0.1/24",
            "fdb",
            "00:00:00:00:00:00:10.2.0.2",
        ],
    );
    assert!(out.contains("tunnel mp0 added"), "{out}");
    fpctl(&b, &["route", "add", "10.200.0.0/24", "via", "10.107.0.2"]);
    let out = ping(&b.topo.h1, &["10.200.0.2"]);
    assert!(out.contains(" 0% packet loss"), "{out}\n{}", b.router.log_text());
    let show = fpctl(&b, &["tunnel", "show"]);
    assert!(
        show.contains("mp0") && show.contains("(multipoint)") && show.contains("1450"),
        "{show}"
    );
    let vtep_mac = sh(h2, &["cat", "/sys/class/net/vx0/address"]).trim().to_string();
    let fdb = fpctl(&b, &["fdb", "show", "mp0"]);
    assert!(fdb.contains("00:00:00:00:00:00") && fdb.contains("static"), "{fdb}");
    assert!(
        fdb.lines()
            .any(|l| l.contains(&vtep_mac) && l.contains("10.2.0.2") && l.contains("learned")),
        "h2's VTEP MAC {vtep_mac} not learned:\n{fdb}"
    );
    eprintln!("$ fpctl tunnel show\n{show}$ fpctl fdb show mp0\n{fdb}");
    let cfg = fpctl(&b, &["config", "show"]);
    assert!(cfg.contains("[[tunnel]]") && cfg.contains("name = \"mp0\""), "{cfg}");
    // A tunnel still used by a route is not deleted.
    let refused = std::process::Command::new(ferroplane_testbed::workspace_bin("fpctl"))
        .arg("--socket")
        .arg(&b.router.socket)
        .args(["tunnel", "del", "mp0"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("10.200.0.0/24"));
    fpctl(&b, &["route", "del", "10.200.0.0/24"]);
    fpctl(&b, &["tunnel", "del", "mp0"]);
    let show = fpctl(&b, &["tunnel", "show"]);
    assert!(!show.contains("mp0"), "{show}");
    let out = sh(&b.topo.h1, &["ping", "-c", "1", "-W", "1", "10.200.0.2"]);
    assert!(!out.contains(" 0% packet loss"), "still reachable after delete: {out}");
    // Ordinary routing is untouched by the interface rebuilds (h2 answers h1 directly again).
    run(&["ip", "route", "del", "10.1.0.0/24"]);
    let out = ping(&b.topo.h1, &[addr::H2_V4]);
    assert!(out.contains(" 0% packet loss"), "{out}");
}
