//! `fpctl`: ferroplane's control client. It reads like `ip`: `fpctl route add 10.0.0.0/8 via
//! 10.2.0.2`. Human output by default, `--json` for scripts; exit status 1 when the daemon answers
//! with an error or cannot be reached, 2 for a command line it cannot parse.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use ferroplane_ctl::{
    call, Client, NextHop, Reply, Request, RouteEntry, RouteSpec, Stats, DEFAULT_SOCKET,
};

#[derive(Parser)]
#[command(name = "fpctl", version, about = "Control a running ferroplane")]
struct Cli {
    /// The daemon's control socket.
    #[arg(long, global = true, default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Print the daemon's reply as JSON.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// The daemon's and this client's versions.
    Version,
    /// Counters per port, per worker (every drop and punt reason) and of the slow path.
    Stats {
        /// Refresh every SECS seconds (default 1) with per-second rates, like `watch`.
        #[arg(long, num_args = 0..=1, default_missing_value = "1", value_name = "SECS")]
        watch: Option<f64>,
        /// With --watch: stop after this many refreshes.
        #[arg(long, requires = "watch")]
        iterations: Option<u64>,
    },
    /// Ports.
    Port {
        #[command(subcommand)]
        cmd: PortCmd,
    },
    /// Routes: `route add PREFIX via ADDR [weight N] [via ADDR [weight N]]... [dev PORT]`.
    Route {
        #[command(subcommand)]
        cmd: RouteCmd,
    },
    /// Neighbours: `neigh add ADDR lladdr MAC dev PORT`.
    Neigh {
        #[command(subcommand)]
        cmd: NeighCmd,
    },
    /// Packet trace: every stage's verdict on the next packets received.
    Trace {
        #[command(subcommand)]
        cmd: TraceCmd,
    },
    /// Write a port's frames to a pcap file (written by the daemon).
    Capture {
        #[command(subcommand)]
        cmd: CaptureCmd,
    },
    /// The running configuration.
    Config {
        #[command(subcommand)]
        cmd: ConfigCmd,
    },
    /// Tunnels: `tunnel add NAME kind vxlan local ADDR remote ADDR vni N address A/LEN`.
    Tunnel {
        #[command(subcommand)]
        cmd: TunnelCmd,
    },
    /// The forwarding database of multipoint VXLAN/Geneve tunnels.
    Fdb {
        #[command(subcommand)]
        cmd: FdbCmd,
    },
}

#[derive(Subcommand)]
enum TunnelCmd {
    /// Add a tunnel: `NAME kind KIND local ADDR [remote ADDR] [vni N] [dstport N] [ttl N]
    /// [mtu N] [address A/LEN]... [mac MAC] [option CLASS:TYPE:HEX]... [fdb MAC:REMOTE]...
    /// [udp_checksum on|off]` (the keys of a `[[tunnel]]` section).
    Add {
        name: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        args: Vec<String>,
    },
    /// Delete a tunnel (routes and neighbours using it must go first).
    Del { name: String },
    /// List tunnels.
    Show,
}

#[derive(Subcommand)]
enum FdbCmd {
    /// List static and learned entries, optionally of one tunnel.
    Show { tunnel: Option<String> },
}

#[derive(Subcommand)]
enum PortCmd {
    /// List ports with addresses and AF_XDP modes.
    Show,
}

#[derive(Subcommand)]
enum RouteCmd {
    /// Add a route, or replace the route for the same prefix. Several `via` make an ECMP group.
    Add {
        prefix: String,
        /// `via ADDR`, `dev PORT`, `weight N` (per next hop), or `blackhole`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        nexthops: Vec<String>,
    },
    /// Delete a route.
    Del { prefix: String },
    /// List every route (connected and configured).
    Show,
    /// The route an address takes.
    Get { address: String },
    /// Load routes from FILE, one `PREFIX via ADDR [weight N]` per line (# comments), in
    /// batches, while forwarding.
    Load { file: PathBuf },
}

#[derive(Subcommand)]
enum NeighCmd {
    /// Add a static neighbour: `ADDR lladdr MAC dev PORT`.
    Add {
        address: String,
        #[arg(value_parser = ["lladdr", "mac"])]
        lladdr_kw: String,
        mac: String,
        #[arg(value_parser = ["dev", "port"])]
        dev_kw: String,
        port: String,
    },
    /// Delete a neighbour: `ADDR [dev PORT]`.
    Del {
        address: String,
        #[arg(trailing_var_arg = true)]
        rest: Vec<String>,
    },
    /// List static and learned neighbours.
    Show,
}

#[derive(Subcommand)]
enum TraceCmd {
    /// Trace the next N packets received.
    Add { count: u32 },
    /// Show what was traced.
    Show {
        /// Forget the shown packets.
        #[arg(long)]
        clear: bool,
    },
}

#[derive(Subcommand)]
enum CaptureCmd {
    /// Start writing PORT's frames to FILE.
    Start {
        port: String,
        file: PathBuf,
        /// Stop after N frames.
        #[arg(long)]
        count: Option<u64>,
        #[arg(long, default_value = "both", value_parser = ["rx", "tx", "both"])]
        direction: String,
    },
    /// Stop the capture and finish its file.
    Stop,
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Print the running configuration as TOML (`ferroplane check` accepts it).
    Show,
    /// Apply FILE: checked fully, then the difference is applied; a bad file changes nothing.
    Apply { file: PathBuf },
}

/// A command-line mistake: exit status 2, like clap's own.
struct Usage(String);

/// Parses `via ADDR [weight N] [dev PORT] ...` / `blackhole` into a route.
fn route_spec(prefix: &str, words: &[String]) -> Result<RouteSpec, Usage> {
    let mut hops: Vec<NextHop> = Vec::new();
    let mut blackhole = false;
    let mut it = words.iter();
    while let Some(w) = it.next() {
        let mut value =
            |what: &str| it.next().cloned().ok_or_else(|| Usage(format!("`{w}` needs {what}")));
        match w.as_str() {
            "blackhole" => blackhole = true,
            "via" => {
                let v = value("an address")?;
                match hops.last_mut() {
                    Some(h) if h.via.is_none() => h.via = Some(v),
                    _ => hops.push(NextHop { via: Some(v), dev: None, weight: 1 }),
                }
            }
            "dev" => {
                let d = value("a port name")?;
                match hops.last_mut() {
                    Some(h) if h.dev.is_none() => h.dev = Some(d),
                    _ => hops.push(NextHop { via: None, dev: Some(d), weight: 1 }),
                }
            }
            "weight" => {
                let n = value("a number")?;
                let h = hops
                    .last_mut()
                    .ok_or_else(|| Usage("`weight` follows a `via` or `dev`".into()))?;
                h.weight = n
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| Usage(format!("weight `{n}` is not a number >= 1")))?;
            }
            other => {
                return Err(Usage(format!(
                    "unexpected `{other}`: expected via ADDR, dev PORT, weight N or blackhole"
                )))
            }
        }
    }
    if hops.is_empty() && !blackhole {
        return Err(Usage("a route needs `via ADDR`, `dev PORT` or `blackhole`".into()));
    }
    Ok(RouteSpec { prefix: prefix.to_string(), nexthops: hops, blackhole })
}

/// A route the way `route show` prints it, and `route add`/`route load` read it back.
fn route_line(r: &RouteEntry) -> String {
    let mut s = r.prefix.clone();
    if r.blackhole {
        s.push_str(" blackhole");
    }
    for h in &r.nexthops {
        if let Some(v) = &h.via {
            s.push_str(&format!(" via {v}"));
        }
        if let Some(d) = &h.dev {
            s.push_str(&format!(" dev {d}"));
        }
        if r.nexthops.len() > 1 || h.weight != 1 {
            s.push_str(&format!(" weight {}", h.weight));
        }
    }
    s.push_str(&format!(" proto {}", r.origin));
    s
}

/// Largest batch `route load` sends (bytes of JSON), under the daemon's line limit.
const LOAD_BATCH_BYTES: usize = 768 * 1024;

fn route_load(cli: &Cli, file: &Path) -> Result<Reply, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let mut routes = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let words: Vec<String> = line.split_whitespace().map(String::from).collect();
        let spec = route_spec(&words[0], &words[1..])
            .map_err(|Usage(e)| format!("{}:{}: {e}", file.display(), n + 1))?;
        routes.push(spec);
    }
    let start = Instant::now();
    let mut client = Client::connect(&cli.socket).map_err(|e| e.to_string())?;
    let mut batch: Vec<RouteSpec> = Vec::new();
    let mut bytes = 0;
    let total = routes.len();
    let mut sent = 0;
    let mut flush = |batch: &mut Vec<RouteSpec>, sent: &mut usize| -> Result<(), String> {
        if batch.is_empty() {
            return Ok(());
        }
        let n = batch.len();
        let req = Request::RouteBatch { add: std::mem::take(batch), del: Vec::new() };
        match client.request(req).map_err(|e| e.to_string())? {
            Reply::Ok { .. } => {
                *sent += n;
                Ok(())
            }
            Reply::Error { message, .. } => Err(format!("after {sent} route(s): {message}")),
            other => Err(format!("unexpected reply {other:?}")),
        }
    };
    for r in routes {
        // Prefix, addresses and framing: a close upper bound of the JSON size.
        let size = 64 + r.prefix.len() + r.nexthops.len() * 64;
        if bytes + size > LOAD_BATCH_BYTES {
            flush(&mut batch, &mut sent)?;
            bytes = 0;
        }
        bytes += size;
        batch.push(r);
    }
    flush(&mut batch, &mut sent)?;
    let secs = start.elapsed().as_secs_f64();
    Ok(Reply::ok(format!(
        "{total} route(s) loaded from {} in {secs:.2} s ({:.0} routes/s)",
        file.display(),
        total as f64 / secs.max(1e-9)
    )))
}

fn print_stats(s: &Stats, prev: Option<(&Stats, f64)>) {
    let rate = |now: u64, then: Option<u64>, dt: f64| {
        format!("{:.0}/s", now.saturating_sub(then.unwrap_or(now)) as f64 / dt)
    };
    print!(
        "{:<12} {:>12} {:>14} {:>12} {:>14}",
        "port", "rx_packets", "rx_bytes", "tx_packets", "tx_bytes"
    );
    // Rates only when watching: they need the previous sample.
    if prev.is_some() {
        print!(" {:>12} {:>12}", "rx_rate", "tx_rate");
    }
    println!();
    for (i, p) in s.ports.iter().enumerate() {
        print!(
            "{:<12} {:>12} {:>14} {:>12} {:>14}",
            p.name, p.rx_packets, p.rx_bytes, p.tx_packets, p.tx_bytes
        );
        if let Some((before, dt)) = prev {
            let b = before.ports.get(i);
            print!(
                " {:>12} {:>12}",
                rate(p.rx_packets, b.map(|q| q.rx_packets), dt),
                rate(p.tx_packets, b.map(|q| q.tx_packets), dt)
            );
        }
        println!();
    }
    for (i, p) in s.tunnels.iter().enumerate() {
        if i == 0 {
            println!(
                "{:<12} {:>12} {:>14} {:>12} {:>14}",
                "tunnel", "rx_packets", "rx_bytes", "tx_packets", "tx_bytes"
            );
        }
        println!(
            "{:<12} {:>12} {:>14} {:>12} {:>14}",
            p.name, p.rx_packets, p.rx_bytes, p.tx_packets, p.tx_bytes
        );
    }
    for w in &s.workers {
        println!(
            "\nworker {}: {} bursts, {} empty polls, busy {:.3} s",
            w.id,
            w.bursts,
            w.empty_polls,
            w.busy_ns as f64 / 1e9
        );
        for (k, v) in w.punts.iter().filter(|(_, v)| **v > 0) {
            println!("  punt {k:<26} {v}");
        }
        for (k, v) in w.drops.iter().filter(|(_, v)| **v > 0) {
            println!("  drop {k:<26} {v}");
        }
    }
    println!("\nslow path:");
    for (k, v) in s.slow_path.iter().filter(|(_, v)| **v > 0) {
        println!("  {k:<31} {v}");
    }
    for (k, v) in s.slow_path_drops.iter().filter(|(_, v)| **v > 0) {
        println!("  drop {k:<26} {v}");
    }
}

fn watch(cli: &Cli, every: f64, iterations: Option<u64>) -> ExitCode {
    let every = Duration::from_secs_f64(every.clamp(0.1, 3600.0));
    let mut prev: Option<(Stats, Instant)> = None;
    let mut n = 0;
    loop {
        let s = match call(&cli.socket, Request::Stats) {
            Ok(Reply::Stats(s)) => s,
            Ok(other) => return show(cli, other),
            Err(e) => {
                eprintln!("fpctl: {e}");
                return ExitCode::FAILURE;
            }
        };
        let now = Instant::now();
        if cli.json {
            println!("{}", serde_json::to_string(&Reply::Stats(s.clone())).unwrap_or_default());
        } else {
            // Clear the screen and go home, as `watch` does.
            print!("\x1b[H\x1b[2J");
            println!("every {:.1}s: fpctl stats\n", every.as_secs_f64());
            print_stats(&s, prev.as_ref().map(|(p, t)| (p, (now - *t).as_secs_f64())));
        }
        let _ = std::io::stdout().flush();
        prev = Some((s, now));
        n += 1;
        if iterations.is_some_and(|m| n >= m) {
            return ExitCode::SUCCESS;
        }
        std::thread::sleep(every);
    }
}

/// Prints a reply; the exit status follows it.
fn show(cli: &Cli, reply: Reply) -> ExitCode {
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&reply).unwrap_or_default());
        return if matches!(reply, Reply::Error { .. }) {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        };
    }
    match reply {
        Reply::Version { daemon, protocol } => {
            println!(
                "fpctl {} (protocol {})",
                env!("CARGO_PKG_VERSION"),
                ferroplane_ctl::PROTOCOL_VERSION
            );
            println!("ferroplane {daemon} (protocol {protocol})");
        }
        Reply::Stats(s) => print_stats(&s, None),
        Reply::Ports { ports } => {
            println!(
                "{:<10} {:<8} {:<14} {:<18} {:>5} {:>6}  {:<14} addresses",
                "name", "driver", "interface", "mac", "mtu", "queues", "mode"
            );
            for p in ports {
                println!(
                    "{:<10} {:<8} {:<14} {:<18} {:>5} {:>6}  {:<14} {}",
                    p.name,
                    p.driver,
                    p.interface.as_deref().unwrap_or("-"),
                    p.mac,
                    p.mtu,
                    p.queues,
                    p.mode.as_deref().unwrap_or("-"),
                    p.addresses.join(" ")
                );
                if let Some(link) = &p.link {
                    println!("    link {link}");
                }
                if !p.device_counters.is_empty() {
                    let c: Vec<String> =
                        p.device_counters.iter().map(|(k, v)| format!("{k} {v}")).collect();
                    println!("    device {}", c.join(", "));
                }
            }
        }
        Reply::Ok { message } => println!("{message}"),
        Reply::Routes { routes } => {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            for r in &routes {
                let _ = writeln!(out, "{}", route_line(r));
            }
        }
        Reply::RouteLookup { address, route } => match route {
            Some(r) => println!("{address} {}", route_line(&r)),
            None => {
                eprintln!("fpctl: {address}: no route (unreachable)");
                return ExitCode::FAILURE;
            }
        },
        Reply::Neighbours { neighbours } => {
            println!("{:<28} {:<10} {:<18} state", "address", "port", "lladdr");
            for n in neighbours {
                println!("{:<28} {:<10} {:<18} {}", n.address, n.port, n.mac, n.state);
            }
        }
        Reply::Trace { pending, packets } => {
            for (i, p) in packets.iter().enumerate() {
                println!(
                    "packet {i}: worker {} port {} {} bytes at {:.6} s\n  {}",
                    p.worker,
                    p.port,
                    p.len,
                    p.timestamp_ns as f64 / 1e9,
                    p.summary
                );
                for s in &p.steps {
                    println!("  {:<10} {}", s.stage, s.verdict);
                }
            }
            if packets.is_empty() {
                println!("no packets traced yet");
            }
            if pending > 0 {
                println!("({pending} more packet(s) armed)");
            }
        }
        Reply::Capture(c) => println!(
            "capture of port {} ({}) to {}: {} frame(s) written, {} dropped, {}",
            c.port,
            c.direction,
            c.file,
            c.written,
            c.dropped,
            if c.running { "running" } else { "finished" }
        ),
        Reply::Config { toml } => print!("{toml}"),
        Reply::Tunnels { tunnels } => {
            println!(
                "{:<10} {:<6} {:<22} {:<22} {:>8} {:>5} {:>5}  {:<18} addresses",
                "name", "kind", "local", "remote", "vni", "port", "mtu", "mac"
            );
            for t in tunnels {
                println!(
                    "{:<10} {:<6} {:<22} {:<22} {:>8} {:>5} {:>5}  {:<18} {}{}",
                    t.name,
                    t.kind,
                    t.local,
                    t.remote.as_deref().unwrap_or("(multipoint)"),
                    t.vni.map_or("-".into(), |v| v.to_string()),
                    t.dst_port.map_or("-".into(), |v| v.to_string()),
                    t.mtu,
                    t.mac.as_deref().unwrap_or("-"),
                    t.addresses.join(" "),
                    if t.options.is_empty() {
                        String::new()
                    } else {
                        format!("  options {}", t.options.join(" "))
                    }
                );
            }
        }
        Reply::Fdb { entries } => {
            println!("{:<10} {:<18} {:<28} state", "tunnel", "mac", "remote");
            for e in entries {
                println!("{:<10} {:<18} {:<28} {}", e.tunnel, e.mac, e.remote, e.state);
            }
        }
        Reply::Error { code, message } => {
            eprintln!(
                "fpctl: {message} ({})",
                serde_json::to_string(&code).unwrap_or_default().trim_matches('"')
            );
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

/// `tunnel add` words to the `[[tunnel]]` section the daemon checks like its config file.
fn tunnel_toml(name: &str, args: &[String]) -> Result<String, Usage> {
    let q = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    let mut lines = vec![format!("[[tunnel]]\nname = {}", q(name))];
    let (mut addresses, mut options, mut fdb) = (Vec::new(), Vec::new(), Vec::new());
    let mut it = args.iter();
    while let Some(k) = it.next() {
        let v = it.next().ok_or_else(|| Usage(format!("`{k}` needs a value")))?;
        let number = |what: &str| {
            v.parse::<u32>().map_err(|_| Usage(format!("{what} `{v}` is not a number")))
        };
        match k.as_str() {
            "kind" | "type" => lines.push(format!("kind = {}", q(v))),
            "local" => lines.push(format!("local = {}", q(v))),
            "remote" => lines.push(format!("remote = {}", q(v))),
            "vni" | "id" => lines.push(format!("vni = {}", number("vni")?)),
            "dstport" | "dst_port" => lines.push(format!("dst_port = {}", number("dstport")?)),
            "ttl" => lines.push(format!("ttl = {}", number("ttl")?)),
            "mtu" => lines.push(format!("mtu = {}", number("mtu")?)),
            "mac" => lines.push(format!("mac = {}", q(v))),
            "address" | "addr" => addresses.push(q(v)),
            "udp_checksum" | "udpcsum" => {
                let on = match v.as_str() {
                    "on" | "true" => true,
                    "off" | "false" => false,
                    _ => return Err(Usage(format!("udp_checksum is on or off, not `{v}`"))),
                };
                lines.push(format!("udp_checksum = {on}"));
            }
            "option" => {
                let parts: Vec<&str> = v.split(':').collect();
                let [class, kind, data @ ..] = parts.as_slice() else {
                    return Err(Usage(format!("option `{v}`: expected CLASS:TYPE[:HEXDATA]")));
                };
                let num = |s: &str| {
                    let (t, radix) = match s.strip_prefix("0x") {
                        Some(h) => (h, 16),
                        None => (s, 10),
                    };
                    u32::from_str_radix(t, radix)
                        .map_err(|_| Usage(format!("option `{v}`: `{s}` is not a number")))
                };
                let data = data.first().copied().unwrap_or("");
                options.push(format!(
                    "{{ class = {}, type = {}, data = {} }}",
                    num(class)?,
                    num(kind)?,
                    q(data)
                ));
            }
            "fdb" => {
                // MAC:REMOTE, where the MAC itself has colons: the remote follows the sixth.
                let parts: Vec<&str> = v.splitn(7, ':').collect();
                if parts.len() != 7 {
                    return Err(Usage(format!("fdb `{v}`: expected MAC:REMOTE")));
                }
                fdb.push(format!(
                    "\n[[tunnel.fdb]]\nmac = {}\nremote = {}",
                    q(&parts[..6].join(":")),
                    q(parts[6])
                ));
            }
            other => return Err(Usage(format!("unknown key `{other}`"))),
        }
    }
    if !addresses.is_empty() {
        lines.push(format!("addresses = [{}]", addresses.join(", ")));
    }
    if !options.is_empty() {
        lines.push(format!("options = [{}]", options.join(", ")));
    }
    let mut toml = lines.join("\n");
    toml.push('\n');
    for f in fdb {
        toml.push_str(&f);
        toml.push('\n');
    }
    Ok(toml)
}

/// The daemon may run in another directory: relative paths are made absolute here.
fn absolute(p: &Path) -> String {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()).display().to_string()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let req = match &cli.cmd {
        Cmd::Version => Request::Version,
        Cmd::Stats { watch: Some(every), iterations } => return watch(&cli, *every, *iterations),
        Cmd::Stats { .. } => Request::Stats,
        Cmd::Port { cmd: PortCmd::Show } => Request::PortShow,
        Cmd::Route { cmd } => match cmd {
            RouteCmd::Add { prefix, nexthops } => match route_spec(prefix, nexthops) {
                Ok(route) => Request::RouteAdd { route },
                Err(Usage(e)) => {
                    eprintln!("fpctl: route add: {e}");
                    return ExitCode::from(2);
                }
            },
            RouteCmd::Del { prefix } => Request::RouteDel { prefix: prefix.clone() },
            RouteCmd::Show => Request::RouteShow,
            RouteCmd::Get { address } => Request::RouteGet { address: address.clone() },
            RouteCmd::Load { file } => {
                return match route_load(&cli, file) {
                    Ok(r) => show(&cli, r),
                    Err(e) => {
                        eprintln!("fpctl: route load: {e}");
                        ExitCode::FAILURE
                    }
                }
            }
        },
        Cmd::Neigh { cmd } => match cmd {
            NeighCmd::Add { address, mac, port, .. } => {
                Request::NeighAdd { port: port.clone(), address: address.clone(), mac: mac.clone() }
            }
            NeighCmd::Del { address, rest } => {
                let port = match rest.as_slice() {
                    [] => None,
                    [kw, p] if kw == "dev" || kw == "port" => Some(p.clone()),
                    _ => {
                        eprintln!("fpctl: neigh del: expected `ADDR [dev PORT]`");
                        return ExitCode::from(2);
                    }
                };
                Request::NeighDel { port, address: address.clone() }
            }
            NeighCmd::Show => Request::NeighShow,
        },
        Cmd::Trace { cmd } => match cmd {
            TraceCmd::Add { count } => Request::TraceAdd { count: *count },
            TraceCmd::Show { clear } => Request::TraceShow { clear: *clear },
        },
        Cmd::Capture { cmd } => match cmd {
            CaptureCmd::Start { port, file, count, direction } => Request::CaptureStart {
                port: port.clone(),
                file: absolute(file),
                count: *count,
                direction: direction.clone(),
            },
            CaptureCmd::Stop => Request::CaptureStop,
        },
        Cmd::Config { cmd } => match cmd {
            ConfigCmd::Show => Request::ConfigShow,
            ConfigCmd::Apply { file } => match std::fs::read_to_string(file) {
                Ok(toml) => Request::ConfigApply { toml, source: Some(file.display().to_string()) },
                Err(e) => {
                    eprintln!("fpctl: cannot read {}: {e}", file.display());
                    return ExitCode::FAILURE;
                }
            },
        },
        Cmd::Tunnel { cmd } => match cmd {
            TunnelCmd::Add { name, args } => match tunnel_toml(name, args) {
                Ok(toml) => Request::TunnelAdd { toml },
                Err(Usage(e)) => {
                    eprintln!("fpctl: tunnel add: {e}");
                    return ExitCode::from(2);
                }
            },
            TunnelCmd::Del { name } => Request::TunnelDel { name: name.clone() },
            TunnelCmd::Show => Request::TunnelShow,
        },
        Cmd::Fdb { cmd: FdbCmd::Show { tunnel } } => Request::FdbShow { tunnel: tunnel.clone() },
    };
    match call(&cli.socket, req) {
        Ok(r) => show(&cli, r),
        Err(e) => {
            eprintln!("fpctl: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn route_grammar() {
        let r =
            route_spec("10.0.0.0/8", &words("via 10.2.0.2 weight 3 via 10.2.0.3")).ok().unwrap();
        assert_eq!(r.nexthops.len(), 2);
        assert_eq!((r.nexthops[0].weight, r.nexthops[1].weight), (3, 1));
        let r = route_spec("10.0.0.0/8", &words("via 10.2.0.2 dev right")).ok().unwrap();
        assert_eq!(r.nexthops.len(), 1);
        assert_eq!(r.nexthops[0].dev.as_deref(), Some("right"));
        let r = route_spec("10.0.0.0/8", &words("dev right via 10.2.0.2 dev left")).ok().unwrap();
        assert_eq!(r.nexthops.len(), 2);
        assert!(route_spec("10.0.0.0/8", &words("blackhole")).ok().unwrap().blackhole);
        assert!(route_spec("10.0.0.0/8", &words("weight 2")).is_err());
        assert!(route_spec("10.0.0.0/8", &words("via")).is_err());
        assert!(route_spec("10.0.0.0/8", &words("via 1.2.3.4 weight 0")).is_err());
        assert!(route_spec("10.0.0.0/8", &words("gateway 1.2.3.4")).is_err());
        assert!(route_spec("10.0.0.0/8", &[]).is_err());
    }

    #[test]
    fn tunnel_grammar_makes_a_section() {
        let t = tunnel_toml(
            "vx1",
            &words("kind vxlan local 192.0.2.1 vni 100 address 10.9.0.1/24 fdb 00:00:00:00:00:00:192.0.2.9 option 0x102:0x80:0a0b0c0d"),
        )
        .ok()
        .unwrap();
        let v: toml::Table = toml::from_str(&t).unwrap();
        let tun = &v["tunnel"].as_array().unwrap()[0];
        assert_eq!(tun["name"].as_str(), Some("vx1"));
        assert_eq!(tun["vni"].as_integer(), Some(100));
        assert_eq!(tun["fdb"][0]["remote"].as_str(), Some("192.0.2.9"));
        assert_eq!(tun["options"][0]["class"].as_integer(), Some(0x102));
        assert_eq!(tun["options"][0]["type"].as_integer(), Some(0x80));
        assert!(tunnel_toml("x", &words("vni")).is_err());
        assert!(tunnel_toml("x", &words("vni ten")).is_err());
        assert!(tunnel_toml("x", &words("colour red")).is_err());
    }

    #[test]
    fn show_line_reads_back() {
        let r = RouteEntry {
            prefix: "10.0.0.0/8".into(),
            nexthops: vec![
                NextHop { via: Some("10.2.0.2".into()), dev: None, weight: 2 },
                NextHop { via: Some("10.2.0.3".into()), dev: Some("right".into()), weight: 1 },
            ],
            blackhole: false,
            origin: "static".into(),
        };
        let line = route_line(&r);
        assert_eq!(
            line,
            "10.0.0.0/8 via 10.2.0.2 weight 2 via 10.2.0.3 dev right weight 1 proto static"
        );
        let w = words(line.trim_end_matches(" proto static"));
        let back = route_spec(&w[0], &w[1..]).ok().unwrap();
        assert_eq!(back.nexthops, r.nexthops);
    }
}
