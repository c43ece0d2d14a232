//! `ferroplane replay` over the bundled capture, its output read back by tshark and scapy (not by
//! our own parser): what a user's capture tool sees.

use std::path::{Path, PathBuf};
use std::process::Command;

use ferroplane_testbed::{require_scapy, require_tool, scratch_dir, workspace_bin};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Runs the bundled replay; returns (left.pcap, right.pcap, replay's stdout).
fn replay(dir: &Path) -> (PathBuf, PathBuf, String) {
    let exe = workspace_bin("ferroplane");
    assert!(
        exe.exists(),
        "{} missing: run `cargo build --workspace --bins` first (test.sh does)",
        exe.display()
    );
    let r = repo();
    let (l, rr) = (dir.join("left.pcap"), dir.join("right.pcap"));
    let out = Command::new(exe)
        .arg("replay")
        .arg("-c")
        .arg(r.join("examples/router.toml"))
        .arg(format!("--in=left={}", r.join("examples/capture/left.pcap").display()))
        .arg(format!("--in=right={}", r.join("examples/capture/right.pcap").display()))
        .arg(format!("--out=left={}", l.display()))
        .arg(format!("--out=right={}", rr.display()))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "replay failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    (l, rr, stdout)
}

/// tshark fields, one line per frame.
fn fields(pcap: &Path, fields: &[&str]) -> Vec<Vec<String>> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r").arg(pcap).args([
        "-o",
        "ip.check_checksum:TRUE",
        "-T",
        "fields",
        "-E",
        "separator=|",
    ]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().expect("run tshark");
    assert!(out.status.success(), "tshark: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('|').map(str::to_string).collect())
        .collect()
}

#[test]
fn replay_output_as_tshark_reads_it() {
    require_tool("tshark", "apt-get install tshark");
    let dir = scratch_dir("replay-tshark");
    let (left, right, summary) = replay(&dir);
    assert!(summary.contains("replayed 19 frames"), "{summary}");

    // Towards h2: ARP requests for both ECMP next hops, then every forwarded packet with TTL 63,
    // a valid header checksum and the router's MAC as source.
    let r = fields(
        &right,
        &[
            "eth.src",
            "eth.dst",
            "arp.opcode",
            "arp.dst.proto_ipv4",
            "ip.dst",
            "ip.ttl",
            "ip.checksum.status",
            "ipv6.hlim",
            "icmpv6.type",
        ],
    );
    assert_eq!(r.len(), 13, "{r:?}");
    assert!(r.iter().all(|f| f[0] == "02:00:00:00:02:01"), "router MAC as source: {r:?}");
    let arp_targets: Vec<&str> = r.iter().filter(|f| f[2] == "1").map(|f| f[3].as_str()).collect();
    assert_eq!(arp_targets, vec!["10.2.0.2", "10.2.0.3"]);
    let ipv4: Vec<_> = r.iter().filter(|f| !f[4].is_empty()).collect();
    assert_eq!(ipv4.len(), 8);
    assert!(
        ipv4.iter().all(|f| f[5] == "63" && f[6] == "1"),
        "TTL 63 and good checksums: {ipv4:?}"
    );
    let ecmp: Vec<&str> =
        ipv4.iter().filter(|f| f[4] == "198.51.100.7").map(|f| f[1].as_str()).collect();
    assert_eq!(ecmp.len(), 6);
    assert!(
        ecmp.contains(&"02:00:00:00:02:02") && ecmp.contains(&"02:00:00:00:02:03"),
        "both ECMP next hops used: {ecmp:?}"
    );
    let echo6: Vec<_> = r.iter().filter(|f| f[8] == "128").collect();
    assert_eq!(echo6.len(), 2);
    assert!(echo6.iter().all(|f| f[7] == "63" && f[1] == "02:00:00:00:02:02"));

    // Towards h1: the slow path's answers.
    let l = fields(
        &left,
        &[
            "arp.opcode",
            "icmp.type",
            "icmp.code",
            "icmpv6.type",
            "ip.src",
            "ip.checksum.status",
            "icmp.checksum.status",
        ],
    );
    let kinds: Vec<String> = l
        .iter()
        .map(|f| {
            if !f[0].is_empty() {
                format!("arp{}", f[0])
            } else if !f[1].is_empty() {
                format!("icmp{}/{}", f[1], f[2])
            } else {
                format!("icmpv6:{}", f[3])
            }
        })
        .collect();
    assert_eq!(kinds, vec!["arp2", "icmp0/0", "icmp11/0", "icmpv6:136", "icmp3/0"]);
    for f in l.iter().filter(|f| !f[1].is_empty()) {
        // ICMP errors quote the original header: tshark lists outer then inner values.
        let first = |s: &str| s.split(',').next().unwrap_or("").to_string();
        assert_eq!(
            (first(&f[4]), first(&f[5]), f[6].clone()),
            ("10.1.0.1".into(), "1".into(), "1".into()),
            "{f:?}"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn replay_output_as_scapy_reads_it() {
    require_scapy();
    let dir = scratch_dir("replay-scapy");
    let (left, right, _) = replay(&dir);
    // scapy recomputes every checksum we wrote and compares.
    let script = r#"
import sys
from scapy.all import rdpcap, Ether, IP, ICMP, UDP, TCP
from scapy.layers.inet6 import IPv6, ICMPv6EchoRequest, ICMPv6ND_NA
bad = []
n = 0
for path in sys.argv[1:]:
    for p in rdpcap(path):
        n += 1
        for layer in (IP, ICMP, UDP, TCP, ICMPv6EchoRequest, ICMPv6ND_NA):
            if layer in p and hasattr(p[layer], "chksum") or (layer in p and hasattr(p[layer], "cksum")):
                field = "chksum" if hasattr(p[layer], "chksum") else "cksum"
                got = getattr(p[layer], field)
                q = Ether(bytes(p))
                setattr(q[layer], field, None)
                want = getattr(Ether(bytes(q))[layer], field)
                if got != want:
                    bad.append((path, n, layer.__name__, hex(got), hex(want)))
print(n, bad)
sys.exit(1 if bad else 0)
"#;
    let out =
        Command::new("python3").arg("-c").arg(script).arg(&left).arg(&right).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "checksum mismatches: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.starts_with("18 []"), "{text}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn replay_is_deterministic() {
    let a = scratch_dir("replay-det-a");
    let b = scratch_dir("replay-det-b");
    let (la, ra, _) = replay(&a);
    let (lb, rb, _) = replay(&b);
    assert_eq!(std::fs::read(la).unwrap(), std::fs::read(lb).unwrap());
    assert_eq!(std::fs::read(ra).unwrap(), std::fs::read(rb).unwrap());
    let _ = std::fs::remove_dir_all(a);
    let _ = std::fs::remove_dir_all(b);
}

#[test]
fn replay_refuses_unknown_ports_and_bad_captures() {
    let exe = workspace_bin("ferroplane");
    let dir = scratch_dir("replay-bad");
    let junk = dir.join("junk.pcap");
    std::fs::write(&junk, b"definitely not a capture").unwrap();
    let r = repo();
    let run = |args: &[String]| {
        let o = Command::new(&exe)
            .arg("replay")
            .arg("-c")
            .arg(r.join("examples/router.toml"))
            .args(args)
            .output()
            .unwrap();
        (o.status.success(), String::from_utf8_lossy(&o.stderr).to_string())
    };
    let (ok, err) = run(&[format!("--in=wan={}", junk.display())]);
    assert!(!ok && err.contains("port `wan`") && err.contains("left, right"), "{err}");
    let (ok, err) = run(&[format!("--in=left={}", junk.display())]);
    assert!(!ok && err.contains("junk.pcap"), "{err}");
    let (ok, err) = run(&["--in=left".to_string()]);
    assert!(!ok && err.contains("PORT=FILE"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}
