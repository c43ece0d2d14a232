//! `ferroplane gen` as a benchmark rig (run on demand: `cargo bench -p ferroplane-testbed --bench
//! gen`; needs root and trafgen; build the release binaries first). Both gen ports sit in one
//! namespace, cabled to a router namespace that forwards with ferroplane on AF_XDP or with the
//! Linux kernel's ip_forward, alternately, 5 runs of RUN_SECS each: 64-byte UDP at the highest
//! rate gen reaches, delivered Mpps as gen's receiver counts them. The same four-way comparison
//! with trafgen as the sender (delivered frames counted on the receiving interface) shows what
//! the sender itself costs, and gen's RFC 2544 search gives each DUT's zero-loss throughput.
//! Prints min/median/max and the ratios of medians.

use std::time::{Duration, Instant};

use ferroplane_dataplane::demo::{router_config_on, RouterProcess};
use ferroplane_dataplane::netns::ns_run;
use ferroplane_testbed::rig::{gen_routed, rig_with, Rig};
use ferroplane_testbed::{min_median_max, require_tool, workspace_bin};

/// Runs per mode (GEN_BENCH_RUNS overrides, for a quick look).
const RUNS: usize = 5;
const RUN_SECS: u64 = 5;

#[derive(Clone, Copy, PartialEq)]
enum Dut {
    Ferroplane,
    Kernel,
}

fn set_dut(r: &mut Rig, dut: Dut) {
    if let Some(mut p) = r.router.take() {
        p.stop();
    }
    let ns = r.router_ns.clone();
    let addrs = [("10.1.0.1/24", "left"), ("10.2.0.1/24", "right")];
    match dut {
        Dut::Kernel => {
            for (a, i) in addrs {
                let _ = ns_run(&ns, &["ip", "addr", "add", a, "dev", i]);
            }
            let _ = ns_run(&ns, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        }
        Dut::Ferroplane => {
            for (a, i) in addrs {
                let _ = ns_run(&ns, &["ip", "addr", "del", a, "dev", i]);
            }
            let _ = ns_run(&ns, &["sysctl", "-qw", "net.ipv4.ip_forward=0"]);
            let _ = ns_run(&ns, &["ip", "neigh", "flush", "all"]);
            let socket = r.dir.join("ctl.sock");
            let cfg = router_config_on("left", "right", &socket, &[1], 1);
            r.router = Some(
                RouterProcess::start(
                    &workspace_bin("ferroplane"),
                    &ns,
                    &r.dir,
                    &cfg,
                    &socket,
                    Duration::from_secs(20),
                )
                .expect("router"),
            );
        }
    }
}

fn gen_run(r: &Rig) -> f64 {
    let json = r.dir.join("run.json");
    let secs = format!("{RUN_SECS}s");
    let o = gen_routed(
        r,
        &[
            "--rate",
            "max",
            "--duration",
            &secs,
            "--size",
            "64",
            "--flows",
            "64",
            "--json",
            json.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "gen: {}", String::from_utf8_lossy(&o.stderr));
    let rep: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    rep["rx_pps"].as_f64().unwrap() / 1e6
}

/// RFC 2544 zero-loss throughput for 64-byte frames, Mpps.
fn search_run(r: &Rig) -> f64 {
    let json = r.dir.join("search.json");
    let o = gen_routed(
        r,
        &[
            "--rate",
            "1Mpps",
            "--search",
            "--trial",
            "1s",
            "--precision",
            "0.05",
            "--size",
            "64",
            "--flows",
            "64",
            "--json",
            json.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "gen --search: {}", String::from_utf8_lossy(&o.stderr));
    if std::env::var_os("GEN_BENCH_VERBOSE").is_some() {
        println!("{}", String::from_utf8_lossy(&o.stdout));
        if let Ok(s) = ferroplane_ctl::call(&r.dir.join("ctl.sock"), ferroplane_ctl::Request::Stats)
        {
            println!("{s:?}");
        }
    }
    let rep: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    rep["search"][0]["throughput_pps"].as_f64().unwrap() / 1e6
}

fn rx_packets(ns: &str, ifn: &str) -> u64 {
    let o = ns_run(ns, &["cat", &format!("/sys/class/net/{ifn}/statistics/rx_packets")]).unwrap();
    String::from_utf8_lossy(&o.stdout).trim().parse().unwrap()
}

fn trafgen_run(r: &Rig) -> f64 {
    let g = &r.gen_ns;
    // trafgen needs the kernel on the gen side: the receiving address answers the DUT's ARP.
    let _ = ns_run(g, &["ip", "addr", "add", "10.2.0.2/24", "dev", "gb"]);
    let mac = String::from_utf8_lossy(
        &ns_run(&r.router_ns, &["cat", "/sys/class/net/left/address"]).unwrap().stdout,
    )
    .trim()
    .to_string();
    let src =
        String::from_utf8_lossy(&ns_run(g, &["cat", "/sys/class/net/ga/address"]).unwrap().stdout)
            .trim()
            .to_string();
    let cfg = r.dir.join("trafgen.cfg");
    std::fs::write(
        &cfg,
        format!("{{ eth(da={mac}, sa={src}), ipv4(saddr=10.1.0.2, daddr=10.2.0.2, ttl=64), udp(sp=dinc(1024,1087), dp=9), fill(0, 18) }}\n"),
    )
    .unwrap();
    // Prime the DUT's neighbour entry for 10.2.0.2.
    let _ = ns_run(g, &["ping", "-c", "1", "-W", "1", "-I", "gb", "10.2.0.1"]);
    let mut tg = ferroplane_testbed::trafgen(g, "ga", &cfg, RUN_SECS + 2);
    std::thread::sleep(Duration::from_millis(500));
    let (c0, t0) = (rx_packets(g, "gb"), Instant::now());
    std::thread::sleep(Duration::from_secs(RUN_SECS));
    let (c1, t1) = (rx_packets(g, "gb"), Instant::now());
    ferroplane_testbed::stop_gracefully(&mut tg);
    let _ = ns_run(g, &["ip", "addr", "del", "10.2.0.2/24", "dev", "gb"]);
    std::thread::sleep(Duration::from_millis(300));
    (c1 - c0) as f64 / (t1 - t0).as_secs_f64() / 1e6
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("gen: run with `cargo bench -p ferroplane-testbed --bench gen` (needs root and trafgen)");
        return;
    }
    require_tool("trafgen", "apt-get install netsniff-ng");
    let mut r = rig_with("gbench", "[0]");
    let mut results: Vec<(&str, Vec<f64>)> = vec![
        ("gen -> ferroplane", vec![]),
        ("gen -> kernel ip_forward", vec![]),
        ("trafgen -> ferroplane", vec![]),
        ("trafgen -> kernel ip_forward", vec![]),
        ("RFC 2544 zero loss, ferroplane", vec![]),
        ("RFC 2544 zero loss, kernel", vec![]),
    ];
    let runs = std::env::var("GEN_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(RUNS);
    for run in 0..runs {
        for (i, dut) in [Dut::Ferroplane, Dut::Kernel].into_iter().enumerate() {
            set_dut(&mut r, dut);
            let g = gen_run(&r);
            let t = trafgen_run(&r);
            let z = search_run(&r);
            println!(
                "run {run}: {:<12} gen max {g:.3} Mpps, trafgen {t:.3} Mpps, zero-loss {z:.3} Mpps",
                if i == 0 { "ferroplane" } else { "kernel" }
            );
            results[i].1.push(g);
            results[i + 2].1.push(t);
            results[i + 4].1.push(z);
        }
    }
    let mut med = Vec::new();
    for (name, v) in &mut results {
        let (a, b, c) = min_median_max(v);
        println!("{name:<30} min {a:.3}  median {b:.3}  max {c:.3} Mpps");
        med.push(b);
    }
    println!("gen: ferroplane / kernel (medians) = {:.2}", med[0] / med[1]);
    println!("trafgen: ferroplane / kernel (medians) = {:.2}", med[2] / med[3]);
    println!(
        "sender: gen / trafgen through ferroplane = {:.2}, through the kernel = {:.2}",
        med[0] / med[2],
        med[1] / med[3]
    );
}
