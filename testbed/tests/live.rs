//! A real `ferroplane run` on AF_XDP between two hosts in network namespaces, checked with the
//! Linux stack's own tools (ping, python sockets, ip neigh). Needs root; runs one test at a time
//! (`--test-threads=1`, as test.sh does) because each builds its own topology.

use std::process::Command;
use std::time::Duration;

use ferroplane_dataplane::netns::{addr, ns_run};
use ferroplane_testbed::live::{bed, ping_ok, port, sh, stats, tcp_transfer, SERIAL};
use ferroplane_testbed::{require_tool, workspace_bin};

#[test]
fn ping_both_ways_ipv4_ipv6_ttl_decremented_neighbours_resolved_by_ferroplane() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let b = bed("p", &[1], 1);
    let t = &b.topo;
    for (ns, dst, v6) in [
        (&t.h1, addr::H2_V4, false),
        (&t.h2, addr::H1_V4, false),
        (&t.h1, addr::H2_V6, true),
        (&t.h2, addr::H1_V6, true),
    ] {
        // The host sent TTL/hop limit 64; one router hop later the reply arrives with 63.
        ping_ok(ns, dst, v6, "63", &|| b.router.log_text());
    }
    // h1 learned the router's MAC from ferroplane's ARP reply and NA.
    let left_mac = t.router_mac(&t.left).unwrap();
    let neigh = sh(&t.h1, &["ip", "neigh", "show", "dev", &t.h1_if]);
    assert!(neigh.contains(&format!("{} lladdr {left_mac}", addr::R_LEFT_V4)), "ARP: {neigh}");
    assert!(neigh.contains(&format!("{} lladdr {left_mac}", addr::R_LEFT_V6)), "ND: {neigh}");
    let s = stats(&b);
    for k in ["arp_replies", "arp_requests", "nd_adverts", "nd_solicits", "neighbours_learned"] {
        assert!(
            s.slow_path.get(k).copied().unwrap_or(0) > 0,
            "slow path {k} = 0: {:?}",
            s.slow_path
        );
    }
}

#[test]
fn ttl_one_probes_get_time_exceeded() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let b = bed("t", &[1], 1);
    let out = sh(&b.topo.h1, &["ping", "-c", "1", "-t", "1", "-W", "2", addr::H2_V4]);
    assert!(
        out.contains(&format!("From {} icmp_seq=1 Time to live exceeded", addr::R_LEFT_V4)),
        "{out}"
    );
    let out = sh(&b.topo.h1, &["ping", "-6", "-c", "1", "-t", "1", "-W", "2", addr::H2_V6]);
    assert!(
        out.contains(&format!("From {}", addr::R_LEFT_V6)) && out.contains("Time exceeded"),
        "{out}"
    );
    let s = stats(&b);
    assert!(s.slow_path["icmp_errors"] >= 2);
}

#[test]
fn tcp_transfer_of_100_mb_arrives_intact() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    require_tool("python3", "apt-get install python3");
    let b = bed("c", &[1], 1);
    let t = &b.topo;
    let total = (100 * 1024 * 1024).to_string();
    let (sent, got) = tcp_transfer(&t.h1, &t.h2, addr::H2_V4, 100 * 1024 * 1024);
    assert!(sent.starts_with(&total), "sender: {sent}");
    assert_eq!(got, sent, "bytes or digest differ\nrouter log:\n{}", b.router.log_text());
    let s = stats(&b);
    assert!(port(&s, "right").tx_packets > 70_000, "{:?}", s.ports);
}

#[test]
fn port_counters_match_what_was_sent() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    require_tool("python3", "apt-get install python3");
    let b = bed("n", &[1], 1);
    let t = &b.topo;
    // Warm up ARP/ND both ways so the count below is only the UDP burst.
    sh(&t.h1, &["ping", "-c", "1", "-W", "2", addr::H2_V4]);
    let listener = {
        let h2 = t.h2.clone();
        std::thread::spawn(move || {
            let code = "import socket,sys\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind((sys.argv[1],9999))\ns.settimeout(3)\nn=0\ntry:\n  while True:\n    s.recv(2048); n+=1\nexcept socket.timeout:\n  pass\nprint(n)";
            Command::new("ip")
                .args(["netns", "exec", &h2, "python3", "-c", code, addr::H2_V4])
                .output()
                .unwrap()
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let before = stats(&b);
    let send = "import socket,sys,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\nfor i in range(1000):\n  s.sendto(b'x'*100,(sys.argv[1],9999))\n  time.sleep(0.0005)";
    sh(&t.h1, &["python3", "-c", send, addr::H2_V4]);
    let got: u64 =
        String::from_utf8_lossy(&listener.join().unwrap().stdout).trim().parse().unwrap_or(0);
    let after = stats(&b);
    let d = |p: &str, f: fn(&ferroplane_ctl::PortStats) -> u64| {
        f(port(&after, p)) - f(port(&before, p))
    };
    assert_eq!(got, 1000, "receiver count");
    let (lrx, rtx) = (d("left", |p| p.rx_packets), d("right", |p| p.tx_packets));
    // Exactly the 1000 datagrams, give or take a stray ARP/ND refresh.
    assert!((1000..=1006).contains(&lrx), "left rx delta {lrx}");
    assert!((1000..=1006).contains(&rtx), "right tx delta {rtx}");
    assert!(d("left", |p| p.rx_bytes) >= 1000 * 142, "bytes");
}

#[test]
fn two_workers_on_a_two_queue_veth_forward() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let b = bed("m", &[0, 1], 2);
    let t = &b.topo;
    for _ in 0..2 {
        let out = sh(&t.h1, &["ping", "-c", "5", "-i", "0.1", "-W", "2", addr::H2_V4]);
        assert!(out.contains(" 0% packet loss"), "{out}\n{}", b.router.log_text());
    }
    // Many flows: the sending veth spreads them over its two queues, so both workers see traffic.
    let send = "import socket,sys\nfor p in range(2000,2400):\n  s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(('',p)); s.sendto(b'y'*64,(sys.argv[1],9)); s.close()";
    sh(&t.h1, &["python3", "-c", send, addr::H2_V4]);
    std::thread::sleep(Duration::from_millis(500));
    let s = stats(&b);
    assert_eq!(s.workers.len(), 2);
    let per_worker: Vec<u64> = s.workers.iter().map(|w| w.bursts).collect();
    assert!(per_worker.iter().all(|&n| n > 0), "bursts per worker {per_worker:?}");
}

#[test]
fn sigterm_stops_cleanly_and_detaches_xdp() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut b = bed("s", &[1], 1);
    let link = ns_run(&b.topo.router, &["ip", "link", "show", "left"]).unwrap();
    assert!(
        String::from_utf8_lossy(&link.stdout).contains("xdp"),
        "XDP program attached while running"
    );
    let st = b.router.stop().expect("exit status");
    assert!(st.success(), "exit status {st}\n{}", b.router.log_text());
    for ifn in ["left", "right"] {
        let link = ns_run(&b.topo.router, &["ip", "link", "show", ifn]).unwrap();
        assert!(
            !String::from_utf8_lossy(&link.stdout).contains("xdp"),
            "{ifn} still has an XDP program"
        );
    }
    assert!(!b.router.socket.exists(), "control socket removed");
}

#[test]
fn missing_interface_is_a_clear_error_before_anything_starts() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let exe = workspace_bin("ferroplane");
    let dir = ferroplane_testbed::scratch_dir("missing");
    let cfg = dir.join("c.toml");
    std::fs::write(
        &cfg,
        "[dataplane]\nworkers = [0]\ncontrol_socket = \"/tmp/fp-missing.sock\"\n[[port]]\nname = \"wan\"\ndriver = \"af_xdp\"\ninterface = \"fp-nonexistent0\"\naddresses = [\"192.0.2.1/24\"]\n",
    )
    .unwrap();
    let o = Command::new(&exe).args(["run", "-c"]).arg(&cfg).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("no interface `fp-nonexistent0`"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}
