//! `ferroplane gen` against a device under test: both gen ports in one namespace (as a
//! two-port TRex box is cabled), ferroplane on AF_XDP routing between them in another. Needs
//! root; one test at a time.

use ferroplane_testbed::live::SERIAL;
use ferroplane_testbed::rig::{gen, gen_routed, rig};

#[test]
fn fifty_kpps_for_two_seconds_through_ferroplane_loses_nothing_and_hits_the_rate() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let r = rig("gn");
    let json = r.dir.join("report.json");
    let plot = r.dir.join("report.png");
    let o = gen_routed(
        &r,
        &[
            "--rate",
            "50kpps",
            "--duration",
            "2s",
            "--size",
            "64",
            "--flows",
            "16",
            "--json",
            json.to_str().unwrap(),
            "--plot",
            plot.to_str().unwrap(),
        ],
    );
    let out =
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(
        o.status.success(),
        "gen failed:\n{out}\nrouter:\n{}",
        r.router.as_ref().unwrap().log_text()
    );
    let rep: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let tx = rep["tx_packets"].as_u64().unwrap();
    let rx = rep["rx_packets"].as_u64().unwrap();
    // Up to 2% short: on 2 cores shared with a busy-polling router the sender can be preempted
    // for longer than its bucket's catch-up (see gen_tunnel.rs).
    assert!((98_000..=101_000).contains(&tx), "sent {tx}, asked 100,000 (50 kpps x 2 s):\n{out}");
    assert_eq!(rep["lost"].as_u64(), Some(0), "{out}");
    assert_eq!(rx, tx, "{out}");
    assert_eq!(rep["duplicates"].as_u64(), Some(0));
    for k in ["p50", "p90", "p99", "p999", "max"] {
        assert!(rep["latency_ns"][k].as_u64().is_some_and(|v| v > 0), "latency {k}: {rep}");
    }
    let png = std::fs::read(&plot).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "plot is not a PNG");
    assert!(out.contains("lost"), "summary:\n{out}");
}

#[test]
fn bad_arguments_are_clear_errors_before_anything_is_sent() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let r = rig("gb");
    let base = [
        "--tx",
        "a",
        "--rx",
        "b",
        "--duration",
        "1s",
        "--src",
        "10.1.0.2",
        "--dst",
        "10.2.0.2",
        "--dst-mac",
        "02:00:00:00:00:01",
    ];
    for (extra, needle) in [
        (vec!["--rate", "fastest"], "rate"),
        (vec!["--rate", "5000gbps"], "impossible"),
        (vec!["--size", "40"], "minimum"),
        (vec!["--size", "9000"], "maximum"),
        (vec!["--sport", "9-1"], "sport"),
        (vec!["--tx", "nope"], "no port `nope`"),
    ] {
        let mut args: Vec<&str> = base.to_vec();
        if extra[0] == "--tx" {
            args[1] = extra[1];
        } else {
            args.extend(extra.iter().copied());
        }
        let o = gen(&r, &args);
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(!o.status.success(), "{extra:?} should fail");
        assert!(
            err.to_lowercase().contains(&needle.to_lowercase()),
            "{extra:?}: expected `{needle}` in:\n{err}"
        );
    }
}

#[test]
fn rfc2544_search_finds_a_zero_loss_rate_through_ferroplane() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let r = rig("gs");
    let json = r.dir.join("search.json");
    let o = gen_routed(
        &r,
        &[
            "--rate",
            "200kpps",
            "--search",
            "--trial",
            "500ms",
            "--precision",
            "0.1",
            "--size",
            "64,512",
            "--json",
            json.to_str().unwrap(),
        ],
    );
    let out =
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "gen --search failed:\n{out}");
    let rep: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let points = rep["search"].as_array().expect("search results");
    assert_eq!(points.len(), 2, "{rep}");
    for p in points {
        let t = p["throughput_pps"].as_f64().unwrap();
        // ferroplane forwards well above 10 kpps here; the search must not report less, nor
        // more than it offered.
        assert!((10_000.0..=200_000.0).contains(&t), "{p}\n{out}");
        assert!(p["trials"].as_u64().unwrap() >= 1);
    }
}
