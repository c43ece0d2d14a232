//! An optional Prometheus endpoint: `GET /metrics` answers the counters of `fpctl stats` in the
//! text exposition format (version 0.0.4).
//!
//! It is plain `std` on purpose: a scrape every few seconds needs no HTTP stack, and a small
//! server is easy to bound. Each connection gets a short-lived thread that has 2 s to receive the
//! request head (at most [`MAX_HEAD`] bytes) and 2 s write timeouts, and at most
//! [`MAX_CONNECTIONS`] of those threads run at once. A slow or silent client therefore delays
//! only itself, and a flood of them costs a bounded number of threads, never the accept loop.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ferroplane_ctl::{PortStats, Stats, WorkerStats};

/// Longest request head read (request line, headers and the blank line); longer gets 431.
pub const MAX_HEAD: usize = 8 * 1024;
/// Most connections served at once; more get 503 and are closed.
pub const MAX_CONNECTIONS: usize = 32;
/// The content type of the 0.0.4 text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How long a client has to send its whole request head. A total, not a per-read timeout: a
/// client sending a byte a second must not hold its thread for hours.
const HEAD_TIMEOUT: Duration = Duration::from_secs(2);
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the accept loop looks at `stop` when no one is connecting.
const POLL: Duration = Duration::from_millis(20);
/// After answering, how long and how much we read and discard before closing ([`linger_close`]).
const LINGER: Duration = Duration::from_millis(500);
const LINGER_BYTES: usize = 64 * 1024;

/// A family of one sample per port or worker: name, help, and where its value comes from.
type Counter<T> = (&'static str, &'static str, fn(&T) -> u64);
/// A family of one sample per worker and reason.
type ByReason = (&'static str, &'static str, fn(&WorkerStats) -> &BTreeMap<String, u64>);

/// Renders the counters in the Prometheus text exposition format (version 0.0.4).
///
/// Every family gets its `# HELP` and `# TYPE` lines even when it has no samples (no ports, no
/// drop reasons yet), so the set of metric names a dashboard sees does not depend on the config.
pub fn render(stats: &Stats) -> String {
    let mut out = String::new();

    let ports: [Counter<PortStats>; 4] = [
        ("ferroplane_port_rx_packets_total", "Packets received on the port.", |p| p.rx_packets),
        ("ferroplane_port_rx_bytes_total", "Bytes received on the port.", |p| p.rx_bytes),
        ("ferroplane_port_tx_packets_total", "Packets sent on the port.", |p| p.tx_packets),
        ("ferroplane_port_tx_bytes_total", "Bytes sent on the port.", |p| p.tx_bytes),
    ];
    for (name, help, get) in ports {
        family(&mut out, name, help);
        for p in &stats.ports {
            sample(&mut out, name, &[("port", &p.name)], get(p));
        }
    }

    let tunnels: [Counter<PortStats>; 4] = [
        ("ferroplane_tunnel_rx_packets_total", "Packets decapsulated from the tunnel.", |p| {
            p.rx_packets
        }),
        ("ferroplane_tunnel_rx_bytes_total", "Inner bytes decapsulated from the tunnel.", |p| {
            p.rx_bytes
        }),
        ("ferroplane_tunnel_tx_packets_total", "Packets encapsulated into the tunnel.", |p| {
            p.tx_packets
        }),
        ("ferroplane_tunnel_tx_bytes_total", "Inner bytes encapsulated into the tunnel.", |p| {
            p.tx_bytes
        }),
    ];
    for (name, help, get) in tunnels {
        family(&mut out, name, help);
        for p in &stats.tunnels {
            sample(&mut out, name, &[("tunnel", &p.name)], get(p));
        }
    }

    let workers: [Counter<WorkerStats>; 2] = [
        ("ferroplane_worker_bursts_total", "Polls of the worker that returned packets.", |w| {
            w.bursts
        }),
        (
            "ferroplane_worker_empty_polls_total",
            "Polls of the worker that returned nothing.",
            |w| w.empty_polls,
        ),
    ];
    for (name, help, get) in workers {
        family(&mut out, name, help);
        for w in &stats.workers {
            sample(&mut out, name, &[("worker", &w.id.to_string())], get(w));
        }
    }
    let name = "ferroplane_worker_busy_seconds_total";
    family(&mut out, name, "Time the worker spent in polls that returned packets.");
    for w in &stats.workers {
        sample(&mut out, name, &[("worker", &w.id.to_string())], seconds(w.busy_ns));
    }

    let reasons: [ByReason; 2] = [
        ("ferroplane_worker_drops_total", "Packets the worker dropped, by reason.", |w| &w.drops),
        (
            "ferroplane_worker_punts_total",
            "Packets the worker punted to the slow path, by reason.",
            |w| &w.punts,
        ),
    ];
    for (name, help, get) in reasons {
        family(&mut out, name, help);
        for w in &stats.workers {
            let id = w.id.to_string();
            for (reason, n) in get(w) {
                sample(&mut out, name, &[("worker", &id), ("reason", reason)], n);
            }
        }
    }

    let name = "ferroplane_slow_path_total";
    family(&mut out, name, "Events handled by the slow path.");
    for (event, n) in &stats.slow_path {
        sample(&mut out, name, &[("event", event)], n);
    }
    let name = "ferroplane_slow_path_drops_total";
    family(&mut out, name, "Packets the slow path dropped, by reason.");
    for (reason, n) in &stats.slow_path_drops {
        sample(&mut out, name, &[("reason", reason)], n);
    }
    out
}

/// The two comment lines that open a family; the help texts are ours and need no escaping.
fn family(out: &mut String, name: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (label, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(label);
            out.push_str("=\"");
            escape_label(out, v);
            out.push('"');
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

/// Label values are free text (port names, reasons) and the format gives three characters a
/// meaning inside them: backslash, double quote and newline.
fn escape_label(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Nanoseconds as decimal seconds, exactly: going through `f64` would round counters past 2^53 ns
/// (about 104 days of busy time) and print noise digits well before that.
fn seconds(ns: u64) -> String {
    let (whole, frac) = (ns / 1_000_000_000, ns % 1_000_000_000);
    if frac == 0 {
        return whole.to_string();
    }
    let frac = format!("{frac:09}");
    format!("{whole}.{}", frac.trim_end_matches('0'))
}

/// Serves `GET /metrics` on `addr` until `stop` is set; any other path gets 404. Returns the bound
/// address (port 0 allowed) and the thread handle.
///
/// `source` is called once per scrape, on the connection's thread. The accept loop ends within
/// about 20 ms of `stop`; scrapes already in flight finish on their own threads, within their
/// timeouts.
pub fn serve(
    addr: SocketAddr,
    source: Arc<dyn Fn() -> Stats + Send + Sync>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(addr)?;
    // Non-blocking, so the loop notices `stop` even when no one connects.
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    let handle = std::thread::Builder::new()
        .name("fp-metrics".into())
        .spawn(move || accept_loop(listener, source, stop))?;
    Ok((bound, handle))
}

fn accept_loop(
    listener: TcpListener,
    source: Arc<dyn Fn() -> Stats + Send + Sync>,
    stop: Arc<AtomicBool>,
) {
    let active = Arc::new(AtomicUsize::new(0));
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((s, _)) => {
                // Only this thread takes slots, so the check cannot race another taker.
                if active.load(Ordering::Acquire) >= MAX_CONNECTIONS {
                    refuse(s);
                    continue;
                }
                let slot = Slot::take(&active);
                let source = source.clone();
                // If the thread cannot be spawned, std drops the closure: the connection is
                // closed and the slot given back.
                let _ =
                    std::thread::Builder::new().name("fp-metrics-conn".into()).spawn(move || {
                        let _slot = slot;
                        connection(s, &*source);
                    });
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            // WouldBlock: no one is waiting. Anything else (out of descriptors, say) is retried
            // after the same pause rather than ending the endpoint.
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

/// One of the [`MAX_CONNECTIONS`] places, given back when the connection's thread ends, however
/// it ends.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(active: &Arc<AtomicUsize>) -> Slot {
        active.fetch_add(1, Ordering::AcqRel);
        Slot(active.clone())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Turns a connection away from the accept loop itself, which must never wait on a client: the
/// socket is made non-blocking, so a write or read that would wait fails instead.
fn refuse(mut s: TcpStream) {
    if s.set_nonblocking(true).is_err() {
        return;
    }
    let _ = s.write_all(&response(
        "503 Service Unavailable",
        "text/plain; charset=utf-8",
        "Retry-After: 1\r\n",
        b"too many connections\n",
    ));
    let _ = s.shutdown(Shutdown::Write);
    // Discard what has already arrived (usually the request), so the close is a FIN rather than a
    // reset that could hide the 503 from the client; but only what is already there.
    let mut sink = [0u8; 4096];
    for _ in 0..4 {
        match s.read(&mut sink) {
            Ok(n) if n > 0 => {}
            _ => break,
        }
    }
}

/// Serves one request on its own thread, then closes.
fn connection(mut s: TcpStream, source: &(dyn Fn() -> Stats + Send + Sync)) {
    // Accepted sockets do not inherit the listener's non-blocking mode on Linux; not every
    // platform agrees, so say it.
    if s.set_nonblocking(false).is_err() || s.set_write_timeout(Some(WRITE_TIMEOUT)).is_err() {
        return;
    }
    let mut buf = [0u8; MAX_HEAD];
    let out = match read_head(&mut s, &mut buf) {
        Head::Complete(len) => answer(&buf[..len], source),
        Head::TooLarge => response(
            "431 Request Header Fields Too Large",
            "text/plain; charset=utf-8",
            "",
            format!("request head longer than {MAX_HEAD} bytes\n").as_bytes(),
        ),
        // Closed, timed out or broken: no one to answer.
        Head::Gone => return,
    };
    if s.write_all(&out).is_ok() {
        linger_close(s);
    }
}

enum Head {
    /// The head is `buf[..len]`, blank line included.
    Complete(usize),
    TooLarge,
    Gone,
}

/// Reads until the blank line that ends the head. Whatever follows it (a body) is left unread:
/// nothing we serve takes one.
fn read_head(s: &mut TcpStream, buf: &mut [u8; MAX_HEAD]) -> Head {
    let deadline = Instant::now() + HEAD_TIMEOUT;
    let mut len = 0;
    loop {
        if len == buf.len() {
            return Head::TooLarge;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || s.set_read_timeout(Some(left)).is_err() {
            return Head::Gone;
        }
        match s.read(&mut buf[len..]) {
            Ok(0) => return Head::Gone,
            Ok(n) => {
                // The terminator may straddle two reads; look back far enough to see it whole.
                let from = len.saturating_sub(3);
                len += n;
                if let Some(end) = head_end(&buf[from..len]) {
                    return Head::Complete(from + end);
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Head::Gone,
        }
    }
}

/// Where the head ends: just past the first empty line, `\r\n\r\n` or a bare `\n\n` (RFC 9112
/// lets a server accept a lone LF as a line end).
fn head_end(buf: &[u8]) -> Option<usize> {
    buf.iter().enumerate().find_map(|(i, &b)| {
        if b != b'\n' {
            return None;
        }
        let rest = &buf[i + 1..];
        if rest.starts_with(b"\n") {
            Some(i + 2)
        } else if rest.starts_with(b"\r\n") {
            Some(i + 3)
        } else {
            None
        }
    })
}

/// The whole response to a complete head. Only the request line matters; headers are ignored.
/// A path other than `/metrics` is 404 whatever the method, since 405 says the resource exists.
fn answer(head: &[u8], source: &dyn Fn() -> Stats) -> Vec<u8> {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let parts: Option<Vec<&str>> =
        std::str::from_utf8(line).ok().map(|l| l.split(' ').filter(|p| !p.is_empty()).collect());
    let (method, target) = match parts.as_deref() {
        Some(&[method, target, version]) if version.starts_with("HTTP/1.") => (method, target),
        _ => {
            return response(
                "400 Bad Request",
                "text/plain; charset=utf-8",
                "",
                b"malformed request line\n",
            )
        }
    };
    let path = target.split('?').next().unwrap_or_default();
    if path != "/metrics" {
        return response(
            "404 Not Found",
            "text/plain; charset=utf-8",
            "",
            b"not found; the metrics are at /metrics\n",
        );
    }
    if method != "GET" {
        return response(
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "Allow: GET\r\n",
            b"only GET is served\n",
        );
    }
    response("200 OK", CONTENT_TYPE, "", render(&source()).as_bytes())
}

/// One connection, one response: `Connection: close` spares us keep-alive and pipelining.
fn response(status: &str, content_type: &str, extra: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n{extra}\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// Closes without losing the answer. Closing a TCP socket with unread input sends a reset, and a
/// reset can make the client throw away the response still in its buffer: a client cut off
/// mid-head (431) or sending a body we ignore would see "connection reset" instead of the status.
/// So: send our FIN, then read and discard what comes until the client closes, for a bounded time
/// and amount.
fn linger_close(s: TcpStream) {
    let _ = s.shutdown(Shutdown::Write);
    let deadline = Instant::now() + LINGER;
    let mut sink = [0u8; 4096];
    let mut drained = 0;
    while drained < LINGER_BYTES {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || s.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match (&s).read(&mut sink) {
            Ok(0) | Err(_) => return,
            Ok(n) => drained += n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::process::Command;

    fn stats() -> Stats {
        Stats {
            ports: vec![PortStats {
                name: "eth0".into(),
                rx_packets: 10,
                rx_bytes: 1500,
                tx_packets: 7,
                tx_bytes: 980,
            }],
            tunnels: vec![PortStats {
                name: "vx0".into(),
                rx_packets: 3,
                rx_bytes: 300,
                tx_packets: 4,
                tx_bytes: 400,
            }],
            workers: vec![WorkerStats {
                id: 0,
                bursts: 5,
                empty_polls: 3,
                busy_ns: 1_500_000_000,
                drops: BTreeMap::from([("no_route".to_string(), 4)]),
                punts: BTreeMap::from([("arp".to_string(), 2)]),
            }],
            slow_path: BTreeMap::from([("arp_reply".to_string(), 1)]),
            slow_path_drops: BTreeMap::from([("queue_full".to_string(), 0)]),
        }
    }

    const EXPECTED: &[&str] = &[
        "# HELP ferroplane_port_rx_packets_total Packets received on the port.",
        "# TYPE ferroplane_port_rx_packets_total counter",
        "ferroplane_port_rx_packets_total{port=\"eth0\"} 10",
        "ferroplane_port_rx_bytes_total{port=\"eth0\"} 1500",
        "ferroplane_port_tx_packets_total{port=\"eth0\"} 7",
        "ferroplane_port_tx_bytes_total{port=\"eth0\"} 980",
        "ferroplane_tunnel_rx_packets_total{tunnel=\"vx0\"} 3",
        "ferroplane_tunnel_tx_bytes_total{tunnel=\"vx0\"} 400",
        "# TYPE ferroplane_worker_bursts_total counter",
        "ferroplane_worker_bursts_total{worker=\"0\"} 5",
        "ferroplane_worker_empty_polls_total{worker=\"0\"} 3",
        "ferroplane_worker_busy_seconds_total{worker=\"0\"} 1.5",
        "# TYPE ferroplane_worker_drops_total counter",
        "ferroplane_worker_drops_total{worker=\"0\",reason=\"no_route\"} 4",
        "ferroplane_worker_punts_total{worker=\"0\",reason=\"arp\"} 2",
        "ferroplane_slow_path_total{event=\"arp_reply\"} 1",
        "ferroplane_slow_path_drops_total{reason=\"queue_full\"} 0",
    ];

    fn assert_lines(text: &str) {
        for want in EXPECTED {
            assert!(text.lines().any(|l| l == *want), "missing {want:?} in:\n{text}");
        }
    }

    #[test]
    fn render_has_the_expected_lines() {
        let text = render(&stats());
        assert_lines(&text);
        assert!(text.ends_with('\n'));
        // HELP and TYPE once per family, and every sample belongs to the family just announced.
        let mut current = "";
        let mut families = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                current = rest.split(' ').next().unwrap();
                assert!(!families.contains(&current), "{current} announced twice");
                families.push(current);
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                assert_eq!(name, current, "{line:?} outside its family");
            }
        }
        assert_eq!(families.len(), 15);
        assert_eq!(text.matches("# HELP ").count(), 15);
    }

    #[test]
    fn empty_stats_still_announce_every_family() {
        let text = render(&Stats::default());
        assert_eq!(text.matches("# TYPE ").count(), 15);
        assert!(text.lines().all(|l| l.starts_with('#')));
    }

    #[test]
    fn label_values_are_escaped() {
        let mut s = Stats::default();
        s.ports.push(PortStats { name: "a\\b\"c\nd".into(), ..Default::default() });
        let text = render(&s);
        assert!(text.contains("ferroplane_port_rx_packets_total{port=\"a\\\\b\\\"c\\nd\"} 0\n"));
    }

    #[test]
    fn busy_seconds_are_exact() {
        assert_eq!(seconds(0), "0");
        assert_eq!(seconds(2_000_000_000), "2");
        assert_eq!(seconds(1), "0.000000001");
        assert_eq!(seconds(1_234_567_890), "1.23456789");
        assert_eq!(seconds(u64::MAX), "18446744073.709551615");
    }

    #[test]
    fn request_lines() {
        let src = || stats();
        let status = |head: &[u8]| {
            let out = answer(head, &src);
            String::from_utf8_lossy(&out).lines().next().unwrap().to_string()
        };
        assert_eq!(status(b"GET /metrics HTTP/1.1\r\n\r\n"), "HTTP/1.1 200 OK");
        assert_eq!(status(b"GET /metrics?x=1 HTTP/1.0\n\n"), "HTTP/1.1 200 OK");
        assert_eq!(status(b"HEAD /metrics HTTP/1.1\r\n\r\n"), "HTTP/1.1 405 Method Not Allowed");
        assert_eq!(status(b"POST /other HTTP/1.1\r\n\r\n"), "HTTP/1.1 404 Not Found");
        assert_eq!(status(b"GET /metrics/ HTTP/1.1\r\n\r\n"), "HTTP/1.1 404 Not Found");
        for bad in [
            &b"\r\n\r\n"[..],
            b"GET /metrics\r\n\r\n",
            b"GET /metrics HTTP/1.1 extra\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\n",
            b"GET /m\xffetrics HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(status(bad), "HTTP/1.1 400 Bad Request", "{bad:?}");
        }
    }

    #[test]
    fn head_ends() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nbody"), Some(18));
        assert_eq!(head_end(b"GET / HTTP/1.1\n\nbody"), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
        assert_eq!(head_end(b"\n"), None);
        assert_eq!(head_end(b""), None);
    }

    proptest! {
        #[test]
        fn any_head_gets_an_http_answer(head in proptest::collection::vec(any::<u8>(), 0..300)) {
            let out = answer(&head, &Stats::default);
            prop_assert!(out.starts_with(b"HTTP/1.1 "));
            let _ = head_end(&head);
        }
    }

    /// A served endpoint that is stopped and joined when the test ends, pass or fail.
    struct Server {
        addr: SocketAddr,
        stop: Arc<AtomicBool>,
        handle: Option<JoinHandle<()>>,
    }

    impl Drop for Server {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Relaxed);
            if let Some(h) = self.handle.take() {
                let _ = h.join();
            }
        }
    }

    fn start() -> Server {
        let stop = Arc::new(AtomicBool::new(false));
        let (addr, handle) =
            serve("127.0.0.1:0".parse().unwrap(), Arc::new(stats), stop.clone()).unwrap();
        assert_ne!(addr.port(), 0);
        Server { addr, stop, handle: Some(handle) }
    }

    struct Scrape {
        status: u16,
        /// Lowercased, CRLF-separated.
        headers: String,
        body: String,
    }

    /// Runs curl against the server; a missing curl fails the test, it never skips it.
    fn curl(url: &str, extra: &[&str]) -> Scrape {
        let out = Command::new("curl")
            .args(["-sS", "-i", "--noproxy", "*", "--max-time", "10"])
            .args(extra)
            .arg(url)
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run curl ({e}): these tests scrape the endpoint with a real HTTP \
                     client and need curl on PATH"
                )
            });
        assert!(
            out.status.success(),
            "curl {url} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).expect("utf-8 response");
        let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
        let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status");
        Scrape { status, headers: head.to_ascii_lowercase(), body: body.to_string() }
    }

    #[test]
    fn scrape_with_curl() {
        let srv = start();
        let r = curl(&format!("http://{}/metrics", srv.addr), &[]);
        assert_eq!(r.status, 200);
        assert!(r.headers.starts_with("http/1.1 200 ok\r\n"));
        assert!(r.headers.contains("\r\ncontent-type: text/plain; version=0.0.4; charset=utf-8"));
        assert!(r.headers.contains(&format!("\r\ncontent-length: {}", r.body.len())));
        assert!(r.headers.contains("\r\nconnection: close"));
        assert_eq!(r.body, render(&stats()));
        assert_lines(&r.body);

        let r = curl(&format!("http://{}/metrics?format=text", srv.addr), &[]);
        assert_eq!(r.status, 200);
        assert_lines(&r.body);
    }

    #[test]
    fn other_paths_and_methods() {
        let srv = start();
        assert_eq!(curl(&format!("http://{}/other", srv.addr), &[]).status, 404);
        assert_eq!(curl(&format!("http://{}/", srv.addr), &[]).status, 404);
        let r = curl(&format!("http://{}/metrics", srv.addr), &["-X", "POST", "-d", "x=1"]);
        assert_eq!(r.status, 405);
        assert!(r.headers.contains("\r\nallow: get"));
    }

    #[test]
    fn a_silent_client_does_not_block_a_scrape() {
        let srv = start();
        // Handled one after another, these alone would hold a scrape back for 4 x HEAD_TIMEOUT.
        let silent: Vec<TcpStream> =
            (0..4).map(|_| TcpStream::connect(srv.addr).unwrap()).collect();
        std::thread::sleep(Duration::from_millis(50));
        let t = Instant::now();
        let r = curl(&format!("http://{}/metrics", srv.addr), &[]);
        let took = t.elapsed();
        assert_eq!(r.status, 200);
        assert_lines(&r.body);
        assert!(took < HEAD_TIMEOUT, "the scrape waited {took:?} behind silent clients");
        drop(silent);
    }

    #[test]
    fn an_oversized_head_gets_431() {
        let srv = start();
        let url = format!("http://{}/metrics", srv.addr);
        let big = format!("X-Filler: {}", "a".repeat(MAX_HEAD + 1000));
        assert_eq!(curl(&url, &["-H", &big]).status, 431);
        // Just under the limit is still served (curl adds ~100 bytes of its own headers).
        let fits = format!("X-Filler: {}", "a".repeat(MAX_HEAD - 400));
        assert_eq!(curl(&url, &["-H", &fits]).status, 200);
    }

    #[test]
    fn a_head_split_across_reads() {
        let srv = start();
        let mut s = TcpStream::connect(srv.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        for part in [&b"GET /met"[..], b"rics HTTP/1.1\r\nHost: x\r\n\r", b"\n"] {
            s.write_all(part).unwrap();
            std::thread::sleep(Duration::from_millis(30));
        }
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    }

    #[test]
    fn connections_beyond_the_cap_get_503() {
        let srv = start();
        let silent: Vec<TcpStream> =
            (0..MAX_CONNECTIONS).map(|_| TcpStream::connect(srv.addr).unwrap()).collect();
        // Accepted after the silent ones (the accept queue is in order), while they still wait.
        let mut extra = TcpStream::connect(srv.addr).unwrap();
        extra.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut out = String::new();
        extra.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{out}");

        // Once they leave, their places are given back.
        drop(silent);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let r = curl(&format!("http://{}/metrics", srv.addr), &[]);
            if r.status == 200 {
                break;
            }
            assert!(Instant::now() < deadline, "still refused: {}", r.status);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    #[test]
    fn stop_ends_the_server() {
        let mut srv = start();
        srv.stop.store(true, Ordering::Relaxed);
        srv.handle.take().unwrap().join().unwrap();
        // The listener went with the thread.
        assert!(TcpStream::connect(srv.addr).is_err());
    }
}
