//! End-to-end forwarding benchmark (run on demand: `cargo bench -p ferroplane-testbed --bench
//! e2e`; needs root, trafgen). The two-host topology forwards 64-byte UDP frames from trafgen at
//! full offered load, alternately through ferroplane on AF_XDP and through the Linux kernel's own
//! ip_forward on the very same namespaces and veths. Each run lasts RUN_SECS; delivered packets are
//! read from h2's interface counters. Prints min/median/max per mode and the ratio of medians, and
//! writes the figures to target/e2e-report.json.

use std::process::Child;
use std::time::{Duration, Instant};

use ferroplane_dataplane::demo::{router_config, RouterProcess};
use ferroplane_dataplane::netns::{addr, ns_run, Topology};
use ferroplane_testbed::{min_median_max, require_tool, workspace_bin};

const RUNS: usize = 5;
const RUN_SECS: u64 = 5;

fn rx_packets(ns: &str, ifn: &str) -> u64 {
    let o = ns_run(ns, &["cat", &format!("/sys/class/net/{ifn}/statistics/rx_packets")])
        .expect("read counter");
    String::from_utf8_lossy(&o.stdout).trim().parse().expect("counter value")
}

fn trafgen(topo: &Topology, dir: &std::path::Path, dst_mac: &str, src_mac: &str) -> Child {
    let cfg = dir.join("trafgen.cfg");
    // trafgen's ipv4()/udp() helpers fill in lengths and the IP checksum.
    let text = format!(
        "{{ eth(da={dst_mac}, sa={src_mac}), ipv4(saddr={}, daddr={}, ttl=64), udp(sp=dinc(1024,4095), dp=9), fill(0, 18) }}\n",
        addr::H1_V4,
        addr::H2_V4
    );
    std::fs::write(&cfg, text).unwrap();
    ferroplane_testbed::trafgen(&topo.h1, &topo.h1_if, &cfg, RUN_SECS + 2)
}

fn measure(topo: &Topology, dir: &std::path::Path, dst_mac: &str, src_mac: &str) -> f64 {
    let mut tg = trafgen(topo, dir, dst_mac, src_mac);
    std::thread::sleep(Duration::from_millis(500)); // ramp up, ARP
    let (c0, t0) = (rx_packets(&topo.h2, &topo.h2_if), Instant::now());
    std::thread::sleep(Duration::from_secs(RUN_SECS));
    let (c1, t1) = (rx_packets(&topo.h2, &topo.h2_if), Instant::now());
    ferroplane_testbed::stop_gracefully(&mut tg);
    std::thread::sleep(Duration::from_millis(300));
    (c1 - c0) as f64 / (t1 - t0).as_secs_f64() / 1e6
}

fn kernel_mode(topo: &Topology, on: bool) {
    let r = &topo.router;
    let verb = if on { "add" } else { "del" };
    let _ = ns_run(r, &["ip", "addr", verb, &format!("{}/24", addr::R_LEFT_V4), "dev", &topo.left]);
    let _ =
        ns_run(r, &["ip", "addr", verb, &format!("{}/24", addr::R_RIGHT_V4), "dev", &topo.right]);
    let _ = ns_run(r, &["sysctl", "-qw", &format!("net.ipv4.ip_forward={}", on as u8)]);
    if !on {
        let _ = ns_run(r, &["ip", "neigh", "flush", "all"]);
    }
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` would pass nothing: only run for real.
    if !std::env::args().any(|a| a == "--bench") {
        println!("e2e: run with `cargo bench -p ferroplane-testbed --bench e2e` (needs root and trafgen)");
        return;
    }
    require_tool("trafgen", "apt-get install netsniff-ng");
    require_tool("ethtool", "apt-get install ethtool");
    let exe = workspace_bin("ferroplane");
    let exe =
        if exe.exists() { exe } else { std::path::PathBuf::from("target/release/ferroplane") };
    assert!(exe.exists(), "build ferroplane first: cargo build --release -p ferroplane-dataplane");
    let tag = format!("b{}", std::process::id() % 100_000);
    let topo = Topology::new(&tag, 1).expect("topology");
    let dir = std::env::temp_dir().join(format!("ferroplane-e2e-{tag}"));
    std::fs::create_dir_all(&dir).unwrap();
    let left_mac = topo.router_mac(&topo.left).unwrap();
    let h1_mac = String::from_utf8_lossy(
        &ns_run(&topo.h1, &["cat", "/sys/class/net/eth0/address"]).unwrap().stdout,
    )
    .trim()
    .to_string();
    let socket = dir.join("ctl.sock");
    let cfg = router_config(&topo, &socket, &[1], 1);
    let (mut kernel, mut ferro) = (Vec::new(), Vec::new());
    for run in 0..RUNS {
        kernel_mode(&topo, true);
        let k = measure(&topo, &dir, &left_mac, &h1_mac);
        kernel_mode(&topo, false);
        let mut r =
            RouterProcess::start(&exe, &topo.router, &dir, &cfg, &socket, Duration::from_secs(20))
                .expect("ferroplane");
        let f = measure(&topo, &dir, &left_mac, &h1_mac);
        r.stop();
        println!("run {}: kernel {k:.3} Mpps, ferroplane {f:.3} Mpps", run + 1);
        kernel.push(k);
        ferro.push(f);
    }
    let (kmin, kmed, kmax) = min_median_max(&mut kernel);
    let (fmin, fmed, fmax) = min_median_max(&mut ferro);
    println!(
        "\n64-byte UDP, one sender core, {RUNS} runs of {RUN_SECS} s each (Mpps delivered to h2)"
    );
    println!("{:<22} {:>8} {:>8} {:>8}", "", "min", "median", "max");
    println!("{:<22} {kmin:>8.3} {kmed:>8.3} {kmax:>8.3}", "linux ip_forward");
    println!("{:<22} {fmin:>8.3} {fmed:>8.3} {fmax:>8.3}", "ferroplane af_xdp");
    println!("ratio of medians (ferroplane / kernel): {:.3}", fmed / kmed);
    let json = format!(
        "{{\"runs\":{RUNS},\"run_secs\":{RUN_SECS},\"kernel_mpps\":{{\"min\":{kmin},\"median\":{kmed},\"max\":{kmax}}},\"ferroplane_mpps\":{{\"min\":{fmin},\"median\":{fmed},\"max\":{fmax}}},\"ratio_of_medians\":{}}}\n",
        fmed / kmed
    );
    let report = ferroplane_testbed::target_file("e2e-report.json");
    match std::fs::write(&report, json) {
        Ok(()) => println!("report: {}", report.display()),
        Err(e) => eprintln!("cannot write {}: {e}", report.display()),
    }
    drop(topo);
    let _ = std::fs::remove_dir_all(dir);
}
