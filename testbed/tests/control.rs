//! The control socket and `fpctl` against a live `ferroplane run` on AF_XDP: run-time route
//! changes under steady traffic with zero loss, every fpctl command, the running configuration
//! round trip, SIGHUP, trace, capture, metrics, and bad input that must get error replies while
//! forwarding goes on. Needs root; one test at a time (`--test-threads=1`, as test.sh does).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use ferroplane_ctl::{call, Client, NextHop, Reply, Request, RouteSpec};
use ferroplane_dataplane::netns::addr;
use ferroplane_testbed::live::{bed, bed_with, port, sh, stats, Bed, SERIAL};
use ferroplane_testbed::{require_tool, workspace_bin};

fn fpctl(b: &Bed, args: &[&str]) -> Output {
    Command::new(workspace_bin("fpctl"))
        .arg("--socket")
        .arg(&b.router.socket)
        .args(args)
        .output()
        .expect("run fpctl")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Runs fpctl and insists on success; returns its output.
fn ok(b: &Bed, args: &[&str]) -> String {
    let o = fpctl(b, args);
    assert!(
        o.status.success(),
        "fpctl {args:?} failed:\n{}\nrouter log:\n{}",
        text(&o),
        b.router.log_text()
    );
    text(&o)
}

/// Runs fpctl and insists on failure (exit 1) with `needle` in what it printed.
fn fails(b: &Bed, args: &[&str], needle: &str) {
    let o = fpctl(b, args);
    assert_eq!(o.status.code(), Some(1), "fpctl {args:?} should fail:\n{}", text(&o));
    assert!(text(&o).contains(needle), "fpctl {args:?}: expected `{needle}` in:\n{}", text(&o));
}

fn route(prefix: &str, via: &str) -> RouteSpec {
    RouteSpec {
        prefix: prefix.into(),
        nexthops: vec![NextHop { via: Some(via.into()), dev: None, weight: 1 }],
        blackhole: false,
    }
}

const UDP_RECEIVER: &str = "import socket,sys\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind((sys.argv[1],9999))\ns.settimeout(3)\nn=0\ntry:\n  while True:\n    s.recv(2048); n+=1\nexcept socket.timeout:\n  pass\nprint(n)";

/// Paced sender: argv[2] datagrams at argv[3] per second, on a fixed schedule (no drift).
const UDP_SENDER: &str = "import socket,sys,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\nn=int(sys.argv[2]); rate=float(sys.argv[3]); t0=time.monotonic()\nfor i in range(n):\n  d=t0+i/rate-time.monotonic()\n  if d>0: time.sleep(d)\n  s.sendto(i.to_bytes(4,'big')+b'x'*60,(sys.argv[1],9999))\nprint(n)";

#[test]
fn ten_thousand_route_changes_under_steady_traffic_lose_nothing() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    require_tool("python3", "apt-get install python3");
    let b = bed("r", &[1], 1);
    let t = &b.topo;
    sh(&t.h1, &["ping", "-c", "1", "-W", "2", addr::H2_V4]);
    let receiver = {
        let h2 = t.h2.clone();
        std::thread::spawn(move || {
            Command::new("ip")
                .args(["netns", "exec", &h2, "python3", "-c", UDP_RECEIVER, addr::H2_V4])
                .output()
                .unwrap()
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    // 1,000 pps for 20 s: the route churn below runs inside that window.
    const SENT: u64 = 20_000;
    let sender = {
        let h1 = t.h1.clone();
        std::thread::spawn(move || {
            let n = SENT.to_string();
            Command::new("ip")
                .args(["netns", "exec", &h1, "python3", "-c", UDP_SENDER, addr::H2_V4, &n, "1000"])
                .output()
                .unwrap()
        })
    };
    let traffic_start = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    // 10,000 routes: 9,992 /24s elsewhere, and /25-/32 over the traffic's own destination, so
    // its packets change route (all to the same host) while they flow.
    let mut routes: Vec<RouteSpec> = (0..9_992u32)
        .map(|i| route(&format!("100.{}.{}.0/24", 64 + i / 256, i % 256), addr::H2_V4))
        .collect();
    for len in 25..=32u32 {
        let m = u32::MAX << (32 - len);
        let p = std::net::Ipv4Addr::from(
            u32::from(addr::H2_V4.parse::<std::net::Ipv4Addr>().unwrap()) & m,
        );
        routes.insert(routes.len() / 2, route(&format!("{p}/{len}"), addr::H2_V4));
    }
    let mut c = Client::connect(&b.router.socket).expect("connect");
    let churn = Instant::now();
    for r in &routes {
        match c.request(Request::RouteAdd { route: r.clone() }).unwrap() {
            Reply::Ok { .. } => {}
            other => panic!("route add {}: {other:?}", r.prefix),
        }
    }
    // Live as soon as the reply came: the traffic's destination now takes the /32.
    match c.request(Request::RouteGet { address: addr::H2_V4.into() }).unwrap() {
        Reply::RouteLookup { route: Some(r), .. } => {
            assert_eq!(r.prefix, format!("{}/32", addr::H2_V4))
        }
        other => panic!("route get: {other:?}"),
    }
    for r in &routes {
        match c.request(Request::RouteDel { prefix: r.prefix.clone() }).unwrap() {
            Reply::Ok { .. } => {}
            other => panic!("route del {}: {other:?}", r.prefix),
        }
    }
    let churn_time = churn.elapsed();
    let churn_end = traffic_start.elapsed();
    println!("20,000 route changes over one connection in {churn_time:?}");
    let sent: u64 =
        String::from_utf8_lossy(&sender.join().unwrap().stdout).trim().parse().unwrap_or(0);
    let got: u64 =
        String::from_utf8_lossy(&receiver.join().unwrap().stdout).trim().parse().unwrap_or(0);
    assert_eq!(sent, SENT, "sender");
    assert!(
        churn_end < Duration::from_secs(19),
        "the churn ({churn_time:?}) must end while traffic still flows (it ended {churn_end:?} into 20 s)"
    );
    let s = stats(&b);
    assert_eq!(
        got,
        sent,
        "lost {} of {sent} packets while routes changed; stats: {s:?}",
        sent - got
    );
    // The hosts' own IPv6 chatter (MLD, router solicitations) is dropped as not routable;
    // nothing else may be.
    let drops: u64 =
        s.workers[0].drops.iter().filter(|(k, _)| !k.starts_with("ipv6_")).map(|(_, v)| v).sum();
    assert_eq!(drops, 0, "{:?}", s.workers[0].drops);
    // Back to the connected route only.
    match call(&b.router.socket, Request::RouteShow).unwrap() {
        Reply::Routes { routes } => {
            assert!(routes.iter().all(|r| r.origin == "connected"), "{routes:?}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn fpctl_commands_config_round_trip_sighup_trace_capture_and_metrics() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    require_tool("tshark", "apt-get install tshark");
    require_tool("curl", "apt-get install curl");
    let metrics_port = 19_000 + (std::process::id() % 1000) as u16;
    let b = bed_with("f", &[1], 1, &|c| {
        c.replacen(
            "poll = \"adaptive\"",
            &format!("poll = \"adaptive\"\nmetrics = \"127.0.0.1:{metrics_port}\""),
            1,
        )
    });
    let t = &b.topo;
    assert!(ok(&b, &["version"]).contains("protocol 1"));
    assert!(ok(&b, &["port", "show"]).contains("left"));

    // Routes: ECMP with weights, show, get, delete, errors.
    ok(&b, &["route", "add", "192.0.2.0/24", "via", "10.2.0.2", "weight", "2", "via", "10.2.0.3"]);
    ok(&b, &["route", "add", "2001:db8:99::/48", "via", "2001:db8:2::2"]);
    ok(&b, &["route", "add", "198.51.100.0/24", "blackhole"]);
    let show = ok(&b, &["route", "show"]);
    assert!(
        show.contains("192.0.2.0/24 via 10.2.0.2 weight 2 via 10.2.0.3 weight 1 proto static"),
        "{show}"
    );
    assert!(show.contains("10.1.0.0/24 dev left proto connected"), "{show}");
    assert!(ok(&b, &["route", "get", "192.0.2.77"]).contains("192.0.2.0/24"));
    assert!(ok(&b, &["route", "get", "2001:db8:99::5"]).contains("2001:db8:99::/48"));
    let json: serde_json::Value =
        serde_json::from_str(&ok(&b, &["--json", "route", "show"])).unwrap();
    assert_eq!(json["reply"], "routes");
    fails(&b, &["route", "get", "203.0.113.1"], "no route");
    fails(&b, &["route", "add", "10.9.0.1/16", "via", "10.2.0.2"], "host bits");
    fails(&b, &["route", "add", "10.9.0.0/16", "dev", "nope"], "no port");
    fails(&b, &["route", "add", "10.9.0.0/16", "via", "172.16.0.1"], "not inside");
    fails(&b, &["route", "del", "10.1.0.0/24"], "connected");
    ok(&b, &["route", "del", "198.51.100.0/24"]);
    fails(&b, &["route", "del", "198.51.100.0/24"], "not_found");

    // Neighbours.
    ok(&b, &["neigh", "add", "10.2.0.77", "lladdr", "02:aa:bb:cc:dd:ee", "dev", "right"]);
    assert!(ok(&b, &["neigh", "show"]).contains("02:aa:bb:cc:dd:ee"));
    fails(
        &b,
        &["neigh", "add", "10.2.0.78", "lladdr", "zz:00:00:00:00:01", "dev", "right"],
        "not a MAC",
    );
    fails(
        &b,
        &["neigh", "add", "10.9.9.9", "lladdr", "02:00:00:00:00:01", "dev", "right"],
        "not inside",
    );

    // The running configuration reads back through `ferroplane check` and carries the changes.
    let running = ok(&b, &["config", "show"]);
    assert!(running.contains("192.0.2.0/24") && running.contains("02:aa:bb:cc:dd:ee"), "{running}");
    let f = b.dir.join("running.toml");
    std::fs::write(&f, &running).unwrap();
    let check =
        Command::new(workspace_bin("ferroplane")).args(["check", "-c"]).arg(&f).output().unwrap();
    assert!(check.status.success(), "check of config show:\n{}", text(&check));

    // config apply: a file without the ECMP route and with another one; a bad file changes nothing.
    let next = running.replace("192.0.2.0/24", "192.0.3.0/24");
    std::fs::write(&f, &next).unwrap();
    assert!(ok(&b, &["config", "apply", f.to_str().unwrap()]).contains("1 route(s) added"));
    let show = ok(&b, &["route", "show"]);
    assert!(show.contains("192.0.3.0/24") && !show.contains("192.0.2.0/24"), "{show}");
    std::fs::write(
        &f,
        format!(
            "{next}\n[[route]]\nprefix = \"10.8.0.1/16\"\nnexthops = [{{ via = \"10.2.0.2\" }}]\n"
        ),
    )
    .unwrap();
    fails(&b, &["config", "apply", f.to_str().unwrap()], "host bits");
    std::fs::write(&f, next.replace("mtu = 1500", "mtu = 1400")).unwrap();
    fails(&b, &["config", "apply", f.to_str().unwrap()], "restart");
    assert_eq!(ok(&b, &["route", "show"]), show, "a refused file changed something");

    // SIGHUP re-reads the daemon's own file.
    let own = std::fs::read_to_string(&b.router.config).unwrap();
    std::fs::write(
        &b.router.config,
        format!(
            "{own}\n[[route]]\nprefix = \"172.31.0.0/16\"\nnexthops = [{{ via = \"10.2.0.2\" }}]\n"
        ),
    )
    .unwrap();
    assert!(b.router.signal(libc::SIGHUP));
    let t0 = Instant::now();
    while !ok(&b, &["route", "show"]).contains("172.31.0.0/16") {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "SIGHUP not applied:\n{}",
            b.router.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The file had no run-time routes: they are gone now, as the file says.
    assert!(!ok(&b, &["route", "show"]).contains("192.0.3.0/24"));

    // Trace: the next packets with every stage's verdict (neighbours resolved first, so the
    // traced echo requests are forwarded, not punted for a neighbour).
    sh(&t.h1, &["ping", "-c", "1", "-W", "2", addr::H2_V4]);
    ok(&b, &["trace", "add", "4"]);
    sh(&t.h1, &["ping", "-c", "2", "-i", "0.2", "-W", "2", addr::H2_V4]);
    let trace = ok(&b, &["trace", "show"]);
    for needle in ["parse", "input", "route", "rewrite", "forward port 1", "icmp type 8"] {
        assert!(trace.contains(needle), "`{needle}` not in trace:\n{trace}");
    }
    fails(&b, &["trace", "add", "0"], "trace count");

    // Capture: a pcap tshark reads. Unbounded until `capture stop`: every echo request.
    let tshark = |f: &std::path::Path, field: &str| {
        let o = Command::new("tshark")
            .arg("-r")
            .arg(f)
            .args(["-T", "fields", "-e", field])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).lines().map(String::from).collect::<Vec<_>>()
    };
    let pcap = b.dir.join("left.pcap");
    ok(&b, &["capture", "start", "left", pcap.to_str().unwrap(), "--direction", "rx"]);
    sh(&t.h1, &["ping", "-c", "4", "-i", "0.2", "-W", "2", addr::H2_V4]);
    assert!(ok(&b, &["capture", "stop"]).contains("finished"));
    let types = tshark(&pcap, "icmp.type");
    assert_eq!(types.iter().filter(|l| *l == "8").count(), 4, "{types:?}");
    assert!(!types.iter().any(|l| l == "0"), "rx only, yet replies captured: {types:?}");
    // With --count: exactly that many frames, then the capture stops by itself.
    let counted = b.dir.join("counted.pcap");
    ok(&b, &["capture", "start", "right", counted.to_str().unwrap(), "--count", "3"]);
    sh(&t.h1, &["ping", "-c", "4", "-i", "0.2", "-W", "2", addr::H2_V4]);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(tshark(&counted, "frame.number").len(), 3);
    fails(&b, &["capture", "start", "nope", "/tmp/x.pcap"], "no port");

    // Stats, once and watched.
    let s = stats(&b);
    assert!(port(&s, "left").rx_packets > 0);
    assert!(ok(&b, &["stats", "--watch", "0.2", "--iterations", "2"]).contains("/s"));

    // Metrics, scraped with curl inside the router's namespace.
    let url = format!("http://127.0.0.1:{metrics_port}/metrics");
    let body = sh(&t.router, &["curl", "-sS", "--noproxy", "*", &url]);
    assert!(body.contains("ferroplane_port_rx_packets_total{port=\"left\"}"), "{body}");
    assert!(body.contains("ferroplane_worker_drops_total"), "{body}");
}

/// Reads one reply line.
fn reply_of(s: &mut UnixStream) -> serde_json::Value {
    let mut line = String::new();
    BufReader::new(s.try_clone().unwrap()).read_line(&mut line).unwrap();
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("reply `{line}`: {e}"))
}

fn raw(b: &Bed, line: &str) -> serde_json::Value {
    let mut s = UnixStream::connect(&b.router.socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(line.as_bytes()).unwrap();
    s.write_all(b"\n").unwrap();
    reply_of(&mut s)
}

#[test]
fn bad_requests_get_error_replies_and_forwarding_goes_on() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let b = bed("b", &[1], 1);
    let code = |v: serde_json::Value| v["code"].as_str().unwrap_or("").to_string();
    assert_eq!(code(raw(&b, "{not json")), "bad_request");
    assert_eq!(code(raw(&b, r#"{"version":1,"cmd":"reboot"}"#)), "bad_request");
    assert_eq!(code(raw(&b, r#"{"version":1,"cmd":"trace_add","count":"many"}"#)), "bad_request");
    assert_eq!(code(raw(&b, r#"{"version":7,"cmd":"stats"}"#)), "unsupported_version");
    let add = |p: &str, via: &str, dev: &str| {
        format!(
            r#"{{"version":1,"cmd":"route_add","route":{{"prefix":"{p}","nexthops":[{{"via":{via},"dev":{dev}}}]}}}}"#
        )
    };
    assert_eq!(code(raw(&b, &add("10.9.0.0/16", "null", "\"nope\""))), "invalid_argument");
    assert_eq!(code(raw(&b, &add("10.9.0.1/16", "\"10.2.0.2\"", "null"))), "invalid_argument");
    assert_eq!(
        code(raw(
            &b,
            r#"{"version":1,"cmd":"neigh_add","port":"right","address":"10.2.0.5","mac":"02:00:00:00:00"}"#
        )),
        "invalid_argument"
    );

    // A 10 MB line: request_too_large, then the connection is closed.
    {
        let mut s = UnixStream::connect(&b.router.socket).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let big = vec![b'x'; 10 << 20];
        // The daemon stops reading after 1 MiB: the rest of the write may fail, the reply stands.
        let _ = s.write_all(&big);
        assert_eq!(code(reply_of(&mut s)), "request_too_large");
        let mut rest = Vec::new();
        let closed = matches!(s.read_to_end(&mut rest), Ok(_) | Err(_));
        assert!(closed);
    }

    // A client that floods requests and never reads, and 300 idle connections.
    let mut flooder = UnixStream::connect(&b.router.socket).unwrap();
    flooder.set_nonblocking(true).unwrap();
    let req = b"{\"version\":1,\"cmd\":\"stats\"}\n".repeat(2000);
    let _ = flooder.write(&req);
    let idle: Vec<UnixStream> =
        (0..300).filter_map(|_| UnixStream::connect(&b.router.socket).ok()).collect();
    assert!(idle.len() >= 256, "only {} connections accepted", idle.len());
    // Others are still served, and forwarding goes on.
    drop(idle);
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    assert_eq!(raw(&b, r#"{"version":1,"cmd":"version"}"#)["reply"], "version");
    assert!(t0.elapsed() < Duration::from_secs(5));
    let out = sh(&b.topo.h1, &["ping", "-c", "3", "-i", "0.2", "-W", "2", addr::H2_V4]);
    assert!(out.contains(" 0% packet loss"), "{out}");
    drop(flooder);
    assert!(
        b.router.log_text().lines().all(|l| !l.contains("panicked")),
        "{}",
        b.router.log_text()
    );
}

#[test]
fn route_load_of_a_large_table_while_forwarding() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let b = bed("l", &[1], 1);
    // 100,000 routes here (tests run debug builds); the README gives the release figure for
    // 1,000,000.
    let n = 100_000u32;
    let file = b.dir.join("table.txt");
    let mut body = String::with_capacity(n as usize * 32);
    for i in 0..n {
        body.push_str(&format!(
            "{}.{}.{}.0/24 via 10.2.0.2\n",
            20 + i / 65_536,
            (i / 256) % 256,
            i % 256
        ));
    }
    std::fs::write(&file, body).unwrap();
    let ping = {
        let h1 = b.topo.h1.clone();
        std::thread::spawn(move || {
            sh(&h1, &["ping", "-c", "100", "-i", "0.05", "-W", "2", addr::H2_V4])
        })
    };
    let out = ok(&b, &["route", "load", file.to_str().unwrap()]);
    assert!(out.contains(&format!("{n} route(s) loaded")), "{out}");
    println!("{out}");
    let ping = ping.join().unwrap();
    assert!(ping.contains(" 0% packet loss"), "{ping}");
    assert!(ok(&b, &["route", "get", "21.0.3.9"]).contains("21.0.3.0/24"));
    let bad = b.dir.join("bad.txt");
    std::fs::write(&bad, "10.7.0.0/16 via 10.2.0.2\n10.8.0.0/16 gateway 10.2.0.2\n").unwrap();
    fails(&b, &["route", "load", bad.to_str().unwrap()], "bad.txt:2");
}
