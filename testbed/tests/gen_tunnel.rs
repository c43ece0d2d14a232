//! `ferroplane gen --encap`: gen loads a tunnel endpoint. gen's port `a` sends VXLAN to the
//! router's `left` address, where ferroplane has a vxlan tunnel back to gen; the router
//! decapsulates, routes the inner packets out of `right`, and gen's port `b` measures them.
//! Then Geneve routed through the same router without being terminated: gen's receiver finds
//! its frames inside the tunnel headers. Needs root; one test at a time.

use std::time::Duration;

use ferroplane_ctl::{call, Reply, Request};
use ferroplane_dataplane::demo::{router_config_on, RouterProcess};
use ferroplane_testbed::live::{port, SERIAL};
use ferroplane_testbed::rig::{gen, rig};
use ferroplane_testbed::workspace_bin;

/// The overlay MAC of the router's tunnel: the inner Ethernet destination gen must use.
const VX0_MAC: &str = "02:00:00:00:01:00";

#[test]
fn vxlan_wrapped_traffic_through_a_ferroplane_tunnel_endpoint_loses_nothing() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut r = rig("gv");
    // The rig's router, restarted with a vxlan tunnel: local = its address on gen's TX side,
    // remote = gen's address there.
    r.router.take().expect("rig router").stop();
    let socket = r.dir.join("ctl.sock");
    let _ = std::fs::remove_file(&socket);
    let cfg = format!(
        r#"{}
[[tunnel]]
name = "vx0"
kind = "vxlan"
local = "10.1.0.1"
remote = "10.1.0.2"
vni = 100
addresses = ["10.100.0.1/24"]
mac = "{VX0_MAC}"
"#,
        router_config_on("left", "right", &socket, &[1], 1)
    );
    r.router = Some(
        RouterProcess::start(
            &workspace_bin("ferroplane"),
            &r.router_ns,
            &r.dir,
            &cfg,
            &socket,
            Duration::from_secs(20),
        )
        .unwrap_or_else(|e| panic!("router with a tunnel: {e}")),
    );
    let json = r.dir.join("tunnel.json");
    let o = gen(
        &r,
        &[
            "--tx",
            "a",
            "--rx",
            "b",
            // inner: from the overlay to gen's port b behind the router
            "--src",
            "10.100.0.2",
            "--dst",
            "10.2.0.2",
            "--gateway",
            "10.1.0.1",
            "--encap",
            "vxlan",
            "--encap-remote",
            "10.1.0.1",
            "--vni",
            "100",
            "--inner-dst-mac",
            VX0_MAC,
            "--rate",
            "20kpps",
            "--duration",
            "2s",
            "--size",
            "64",
            "--flows",
            "8",
            "--quiet",
            "--json",
            json.to_str().unwrap(),
        ],
    );
    let out =
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    let router_log = r.router.as_ref().unwrap().log_text();
    assert!(o.status.success(), "gen failed:\n{out}\nrouter:\n{router_log}");
    let rep: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let tx = rep["tx_packets"].as_u64().unwrap();
    let rx = rep["rx_packets"].as_u64().unwrap();
    eprintln!("vxlan into the tunnel endpoint:\n{}", String::from_utf8_lossy(&o.stdout));
    // Up to 2% short: on 2 cores shared with a busy-polling router, the sender can be
    // preempted for longer than its bucket's 20 ms catch-up (a CI run sent 39,596 of 40,000,
    // with p99 latency at 12 ms). It reports what it really sent; exactness is gen's own tests'.
    assert!((39_200..=40_400).contains(&tx), "sent {tx}, asked 40,000 (20 kpps x 2 s):\n{out}");
    assert_eq!(rep["lost"].as_u64(), Some(0), "{out}\nrouter:\n{router_log}");
    assert_eq!(rx, tx, "{out}");
    assert_eq!(rep["duplicates"].as_u64(), Some(0), "{out}");
    assert_eq!(rep["encap"], "vxlan over IPv4 (+50 bytes of outer headers)", "{out}");
    // L1 accounting uses the wire size: 64-byte inner frames leave as 114-byte VXLAN frames
    // (+50 outer headers) and come back decapsulated at 64.
    let (tx_pps, rx_pps) = (rep["tx_pps"].as_f64().unwrap(), rep["rx_pps"].as_f64().unwrap());
    let tx_bits = rep["tx_bps_l1"].as_f64().unwrap() / tx_pps;
    let rx_bits = rep["rx_bps_l1"].as_f64().unwrap() / rx_pps;
    assert!((tx_bits - (114.0 + 20.0) * 8.0).abs() < 1.0, "tx bits per frame {tx_bits}\n{out}");
    assert!((rx_bits - (64.0 + 20.0) * 8.0).abs() < 1.0, "rx bits per frame {rx_bits}\n{out}");
    // The router did decapsulate them: 110-byte frames (64 with outer headers, without FCS)
    // in on `left`, 60-byte frames out of `right`, and no tunnel drop.
    let stats = match call(&socket, Request::Stats) {
        Ok(Reply::Stats(s)) => s,
        other => panic!("stats: {other:?}"),
    };
    let (left, right) = (port(&stats, "left"), port(&stats, "right"));
    // Besides the tunnel traffic (tx + warm-up frames), one 42-byte ARP frame each way.
    let frames = left.rx_packets - 1;
    assert!(frames >= tx, "{left:?}");
    assert_eq!(left.rx_bytes, frames * 110 + 42, "{left:?}");
    assert_eq!(right.tx_packets, frames + 1, "{stats:?}");
    assert_eq!(right.tx_bytes, frames * 60 + 42, "{right:?}");
    let w = &stats.workers[0];
    for (reason, n) in &w.drops {
        assert!(!reason.starts_with("tunnel") || *n == 0, "{reason}: {n}");
    }

    // A device under test that forwards tunnel traffic without terminating it (the router has
    // no geneve listener): gen's receiver finds its trailer inside the Geneve frames.
    let o = gen(
        &r,
        &[
            "--tx",
            "a",
            "--rx",
            "b",
            "--src",
            "10.100.0.2",
            "--dst",
            "10.100.0.3",
            "--gateway",
            "10.1.0.1",
            "--encap",
            "geneve",
            "--encap-remote",
            "10.2.0.2",
            "--vni",
            "7",
            "--inner-dst-mac",
            "02:00:00:00:02:00",
            "--geneve-option",
            "0x0102:0x01:0a0b0c0d",
            "--rate",
            "20kpps",
            "--duration",
            "1s",
            "--size",
            "128",
            "--quiet",
            "--json",
            json.to_str().unwrap(),
        ],
    );
    let out =
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "gen (geneve) failed:\n{out}");
    let rep: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let tx = rep["tx_packets"].as_u64().unwrap();
    eprintln!("geneve routed, not terminated:\n{}", String::from_utf8_lossy(&o.stdout));
    // Up to 2% short, as above.
    assert!((19_600..=20_200).contains(&tx), "sent {tx}, asked 20,000:\n{out}");
    assert_eq!(rep["lost"].as_u64(), Some(0), "{out}");
    assert_eq!(rep["rx_packets"].as_u64(), Some(tx), "{out}");
    // Geneve with one 8-byte option: 128 + 58 on the wire both ways (routed, not decapsulated).
    for k in ["tx", "rx"] {
        let bits = rep[format!("{k}_bps_l1")].as_f64().unwrap()
            / rep[format!("{k}_pps")].as_f64().unwrap();
        assert!(
            (bits - (128.0 + 58.0 + 20.0) * 8.0).abs() < 1.0,
            "{k} bits per frame {bits}\n{out}"
        );
    }
}
