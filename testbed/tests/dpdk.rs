//! ferroplane on DPDK ports, end to end: the testbed's two hosts in network namespaces, the
//! router's veths driven by DPDK's `net_af_packet`, traffic from the Linux stack (ping, TCP);
//! and two ferroplane processes joined by `net_memif`. Each router is a process of its own (EAL
//! starts once per process). Needs root, and a `ferroplane` built with `--features dpdk`
//! (test.sh builds it): a build without DPDK fails these tests with "needs a build with
//! `--features dpdk`", never skips them.

use std::process::Command;
use std::time::Duration;

use ferroplane_ctl::{call, Reply, Request};
use ferroplane_dataplane::demo::RouterProcess;
use ferroplane_dataplane::netns::{addr, Topology};
use ferroplane_testbed::live::{bed_with, ping_ok, port, sh, stats, tcp_transfer, Bed, SERIAL};
use ferroplane_testbed::workspace_bin;

/// The testbed's router configuration with both ports on net_af_packet (`qpairs` queues each).
fn af_packet(cfg: String, qpairs: u16) -> String {
    let mut c = cfg;
    for (i, ifname) in ["left", "right"].iter().enumerate() {
        c = c.replace(
            &format!("driver = \"af_xdp\"\ninterface = \"{ifname}\""),
            &format!("driver = \"dpdk\"\ninterface = \"net_af_packet{i},iface={ifname},qpairs={qpairs}\""),
        );
    }
    assert!(!c.contains("af_xdp"), "config edit missed a port:\n{c}");
    c
}

fn dpdk_bed(tag: &str, workers: &[usize], queues: u16) -> Bed {
    bed_with(tag, workers, queues, &|c| af_packet(c, queues))
}

fn port_show(socket: &std::path::Path) -> Vec<ferroplane_ctl::PortInfo> {
    match call(socket, Request::PortShow) {
        Ok(Reply::Ports { ports }) => ports,
        other => panic!("port show: {other:?}"),
    }
}

#[test]
fn ping_v4_v6_both_ways_through_af_packet_ports_and_port_show_has_the_link() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let b = dpdk_bed("dp", &[1], 1);
    let t = &b.topo;
    let log = || b.router.log_text();
    for (ns, dst, v6) in [
        (&t.h1, addr::H2_V4, false),
        (&t.h2, addr::H1_V4, false),
        (&t.h1, addr::H2_V6, true),
        (&t.h2, addr::H1_V6, true),
    ] {
        ping_ok(ns, dst, v6, "63", &log);
    }
    let ports = port_show(&b.router.socket);
    for p in &ports {
        assert_eq!(p.driver, "dpdk");
        assert!(p.mode.as_deref().unwrap_or("").contains("net_af_packet"), "{p:?}");
        assert!(p.link.as_deref().unwrap_or("").starts_with("up"), "{p:?}");
        assert!(p.device_counters["ipackets"] >= 6, "{p:?}");
        assert!(p.device_counters["opackets"] >= 6, "{p:?}");
        assert_eq!(p.device_counters["rx_copied"], 0, "zero copy: {p:?}");
    }
    // The MAC the hosts resolved is the router's veth's, as DPDK read it.
    assert_eq!(ports[0].mac, t.router_mac(&t.left).unwrap());
    let neigh = sh(&t.h1, &["ip", "neigh", "show", "dev", &t.h1_if]);
    assert!(neigh.contains(&format!("{} lladdr {}", addr::R_LEFT_V4, ports[0].mac)), "{neigh}");
    // fpctl prints it too.
    let fpctl = workspace_bin("fpctl");
    assert!(
        fpctl.exists(),
        "{} missing: run `cargo build --workspace --bins` first",
        fpctl.display()
    );
    let o = Command::new(&fpctl)
        .arg("--socket")
        .arg(&b.router.socket)
        .args(["port", "show"])
        .output()
        .expect("run fpctl");
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("link up") && text.contains("ipackets"), "fpctl port show:\n{text}");
}

#[test]
fn tcp_transfer_of_50_mb_through_af_packet_ports_arrives_intact() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let b = dpdk_bed("dc", &[1], 1);
    let t = &b.topo;
    let (sent, got) = tcp_transfer(&t.h1, &t.h2, addr::H2_V4, 50 * 1024 * 1024);
    assert!(sent.starts_with(&(50 * 1024 * 1024).to_string()), "sender: {sent}");
    assert_eq!(got, sent, "bytes or digest differ\nrouter log:\n{}", b.router.log_text());
    let s = stats(&b);
    assert!(port(&s, "right").tx_packets > 30_000, "{:?}", s.ports);
}

#[test]
fn two_workers_serve_two_af_packet_queue_pairs() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let b = dpdk_bed("dm", &[0, 1], 2);
    let t = &b.topo;
    ping_ok(&t.h1, addr::H2_V4, false, "63", &|| b.router.log_text());
    // Many flows: net_af_packet spreads its queue pairs by the kernel's packet fanout hash, so
    // both workers receive.
    let send = "import socket,sys\nfor p in range(2000,2400):\n  s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(('',p)); s.sendto(b'y'*64,(sys.argv[1],9)); s.close()";
    sh(&t.h1, &["python3", "-c", send, addr::H2_V4]);
    std::thread::sleep(Duration::from_millis(500));
    let s = stats(&b);
    assert_eq!(s.workers.len(), 2);
    let per_worker: Vec<u64> = s.workers.iter().map(|w| w.bursts).collect();
    assert!(per_worker.iter().all(|&n| n > 0), "bursts per worker {per_worker:?}");
    assert!(port(&s, "right").tx_packets >= 400, "{:?}", s.ports);
    let ports = port_show(&b.router.socket);
    assert!(ports[0].mode.as_deref().unwrap_or("").contains("2 queue(s)"), "{:?}", ports[0]);
}

/// Two routers in the router namespace: A owns `left` (af_packet) and serves a memif; B is the
/// memif's client and owns `right`. h1 -> A -> memif -> B -> h2: two hops. The tests then stop
/// B and check that A sees its memif link go down.
fn memif_pair(
    tag: &str,
    topo: &Topology,
    dir: &std::path::Path,
    queues: u16,
) -> (RouterProcess, RouterProcess) {
    let workers = if queues == 2 { "[0, 1]" } else { "[1]" };
    let sock = dir.join("memif.sock");
    let a_socket = dir.join("a.sock");
    let b_socket = dir.join("b.sock");
    let a = format!(
        r#"[dataplane]
workers = {workers}
control_socket = "{a_socket}"

[[port]]
name = "left"
driver = "dpdk"
interface = "net_af_packet0,iface={left},qpairs={queues}"
queues = {queues}
addresses = ["{l4}/24", "{l6}/64"]

[[port]]
name = "mif"
driver = "dpdk"
interface = "net_memif0,role=server,id=7,socket={sock},socket-abstract=no"
queues = {queues}
addresses = ["10.99.0.1/30", "fd99::1/64"]

[[route]]
prefix = "10.2.0.0/24"
nexthops = [{{ via = "10.99.0.2" }}]

[[route]]
prefix = "2001:db8:2::/64"
nexthops = [{{ via = "fd99::2" }}]
"#,
        a_socket = a_socket.display(),
        sock = sock.display(),
        left = topo.left,
        l4 = addr::R_LEFT_V4,
        l6 = addr::R_LEFT_V6,
    );
    let b = format!(
        r#"[dataplane]
workers = {workers}
control_socket = "{b_socket}"

[[port]]
name = "mif"
driver = "dpdk"
interface = "net_memif1,role=client,id=7,socket={sock},socket-abstract=no"
queues = {queues}
addresses = ["10.99.0.2/30", "fd99::2/64"]

[[port]]
name = "right"
driver = "dpdk"
interface = "net_af_packet1,iface={right},qpairs={queues}"
queues = {queues}
addresses = ["{r4}/24", "{r6}/64"]

[[route]]
prefix = "10.1.0.0/24"
nexthops = [{{ via = "10.99.0.1" }}]

[[route]]
prefix = "2001:db8:1::/64"
nexthops = [{{ via = "fd99::1" }}]
"#,
        b_socket = b_socket.display(),
        sock = sock.display(),
        right = topo.right,
        r4 = addr::R_RIGHT_V4,
        r6 = addr::R_RIGHT_V6,
    );
    let exe = workspace_bin("ferroplane");
    let start = |name: &str, cfg: &str, socket: &std::path::Path| {
        RouterProcess::start(
            &exe,
            &topo.router,
            &dir.join(name),
            cfg,
            socket,
            Duration::from_secs(30),
        )
        .unwrap_or_else(|e| panic!("router {name} ({tag}): {e}"))
    };
    let ra = start("a", &a, &a_socket);
    let rb = start("b", &b, &b_socket);
    (ra, rb)
}

fn memif_test(tag: &str, queues: u16) {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "these tests need root (network namespaces)");
    let tag = format!("{tag}{}", std::process::id() % 100_000);
    let topo = Topology::new(&tag, queues).unwrap_or_else(|e| panic!("topology: {e}"));
    let dir = std::env::temp_dir().join(format!("ferroplane-memif-{tag}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // Removes the directory (configs, logs, the memif socket) however the test ends; declared
    // before the routers, so it goes after they have stopped.
    struct RemoveDir(std::path::PathBuf);
    impl Drop for RemoveDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _cleanup = RemoveDir(dir.clone());
    let (mut ra, mut rb) = memif_pair(&tag, &topo, &dir, queues);
    let (la, lb) = (ra.log.clone(), rb.log.clone());
    let log = move || {
        let text = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();
        format!("router A:\n{}\nrouter B:\n{}", text(&la), text(&lb))
    };
    // The memif link comes up once the client has connected.
    let t0 = std::time::Instant::now();
    loop {
        let up = [&ra.socket, &rb.socket].iter().all(|s| {
            port_show(s).iter().all(|p| p.link.as_deref().unwrap_or("").starts_with("up"))
        });
        if up {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "memif link not up in 10 s\n{}", log());
        std::thread::sleep(Duration::from_millis(100));
    }
    for (ns, dst, v6) in [
        (&topo.h1, addr::H2_V4, false),
        (&topo.h2, addr::H1_V4, false),
        (&topo.h1, addr::H2_V6, true),
        (&topo.h2, addr::H1_V6, true),
    ] {
        // Two router hops: TTL 64 arrives as 62.
        ping_ok(ns, dst, v6, "62", &log);
    }
    let (sent, got) = tcp_transfer(&topo.h1, &topo.h2, addr::H2_V4, 20 * 1024 * 1024);
    assert!(sent.starts_with(&(20 * 1024 * 1024).to_string()), "sender: {sent}\n{}", log());
    assert_eq!(got, sent, "bytes or digest differ\n{}", log());
    for s in [&ra.socket, &rb.socket] {
        let mif = port_show(s).into_iter().find(|p| p.name == "mif").unwrap();
        // 20 MiB of TCP crossed the memif one way (and its ACKs the other).
        let c = &mif.device_counters;
        assert!(c["ipackets"] + c["opackets"] > 14_000, "{mif:?}");
        assert_eq!(c["rx_copied"] + c["rx_no_buffer"] + c["tx_no_mbuf"], 0, "{mif:?}");
        assert!(
            mif.mode.as_deref().unwrap_or("").contains(&format!("{queues} queue(s)")),
            "{mif:?}"
        );
    }
    // Link down: B goes away, A's memif loses its peer; A's link watch sees and counts it.
    let changes = |s: &std::path::Path| {
        port_show(s).into_iter().find(|p| p.name == "mif").unwrap().device_counters["link_changes"]
    };
    let before = changes(&ra.socket);
    let st = rb.stop().expect("exit status");
    assert!(st.success(), "exit status {st}\n{}", rb.log_text());
    let t0 = std::time::Instant::now();
    loop {
        let mif = port_show(&ra.socket).into_iter().find(|p| p.name == "mif").unwrap();
        if mif.link.as_deref() == Some("down") && changes(&ra.socket) > before {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "link down not seen: {mif:?}\n{}", log());
        std::thread::sleep(Duration::from_millis(200));
    }
    // Forwarding towards the dead link is counted, not fatal: A still answers. The memif
    // refuses every frame while it has no peer; A counts each refused frame.
    let refused = |s: &std::path::Path| {
        port_show(s).into_iter().find(|p| p.name == "mif").unwrap().device_counters["tx_ring_full"]
    };
    let refused_before = refused(&ra.socket);
    let out = sh(&topo.h1, &["ping", "-c", "2", "-i", "0.2", "-W", "1", addr::H2_V4]);
    assert!(out.contains("100% packet loss"), "{out}");
    let refused_after = refused(&ra.socket);
    assert!(
        refused_after >= refused_before + 2,
        "2 echo requests towards the dead memif, tx_ring_full {refused_before} -> \
         {refused_after}\n{}",
        log()
    );
    ping_ok(&topo.h1, addr::R_LEFT_V4, false, "64", &log);
    assert!(ra.log_text().contains("link down"), "{}", ra.log_text());
    let st = ra.stop().expect("exit status");
    assert!(st.success(), "exit status {st}\n{}", ra.log_text());
    drop(topo);
}

#[test]
fn two_ferroplanes_joined_by_memif_route_ping_and_tcp() {
    memif_test("mf", 1);
}

#[test]
fn two_ferroplanes_joined_by_a_two_queue_memif() {
    memif_test("mq", 2);
}
