//! `ferroplane`: the dataplane daemon and its offline tools.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ferroplane_dataplane::assemble::build_tables;
use ferroplane_dataplane::config::{self, Config};
use ferroplane_dataplane::replay::{replay, PortFile};

#[derive(Parser)]
#[command(name = "ferroplane", version, about = "A kernel-bypass packet dataplane")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Validate a configuration file and report every error (exit status 2 when invalid).
    Check {
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Run the dataplane: open the ports, start the workers, serve the control socket.
    Run {
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Build two hosts and a router in network namespaces, forward traffic through ferroplane on
    /// AF_XDP, print what happened, clean up (needs root).
    Demo,
    /// Generate traffic and measure what comes back: exact rates, loss, latency, RFC 2544.
    Gen(Box<GenCli>),
    /// Run the pipeline offline: pcap/pcapng in per port, pcap out per port.
    Replay {
        #[arg(short, long)]
        config: PathBuf,
        /// PORT=FILE: frames received on PORT (repeatable).
        #[arg(long = "in", value_name = "PORT=FILE", required = true)]
        inputs: Vec<PortFile>,
        /// PORT=FILE: where frames sent on PORT are written (repeatable).
        #[arg(long = "out", value_name = "PORT=FILE")]
        outputs: Vec<PortFile>,
    },
}

/// `ferroplane gen`'s flags (see the README for examples).
#[derive(clap::Args)]
struct GenCli {
    /// The rig file: `[[port]]` as for the dataplane, `[dataplane]` optional (workers: TX core,
    /// RX core).
    #[arg(short, long)]
    config: PathBuf,
    /// Port that sends.
    #[arg(long)]
    tx: String,
    /// Port that receives and measures (loss, duplicates, reordering, latency).
    #[arg(long)]
    rx: Option<String>,
    /// 50kpps, 1.5Mpps, 2gbps (layer 1: preamble and gap counted), or max.
    #[arg(long, default_value = "max")]
    rate: String,
    /// How long to send: 2s, 500ms.
    #[arg(long, value_parser = parse_duration, conflicts_with = "count")]
    duration: Option<std::time::Duration>,
    /// How many packets to send.
    #[arg(long)]
    count: Option<u64>,
    /// Ethernet frame sizes with FCS: 64, a list 64,512,1518, or imix.
    #[arg(long, default_value = "64")]
    size: String,
    /// Distinct 5-tuples to cycle through.
    #[arg(long, default_value_t = 1)]
    flows: u32,
    /// udp, tcp (SYN) or icmp (echo request).
    #[arg(long, default_value = "udp")]
    proto: String,
    /// Source address or range, 10.1.0.2 or 10.1.0.2-10.1.0.200.
    #[arg(long)]
    src: String,
    /// Destination address or range.
    #[arg(long)]
    dst: String,
    /// Source port or range.
    #[arg(long, default_value = "1024-65535")]
    sport: String,
    /// Destination port or range.
    #[arg(long, default_value = "9")]
    dport: String,
    /// Ethernet destination of the frames.
    #[arg(long)]
    dst_mac: Option<String>,
    /// Resolve the Ethernet destination with ARP/ND for this next hop.
    #[arg(long)]
    gateway: Option<String>,
    /// Write the report as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Plot throughput per frame size and the latency distribution (PNG).
    #[arg(long)]
    plot: Option<PathBuf>,
    /// RFC 2544 throughput search: the highest rate with loss within --loss, per frame size.
    #[arg(long)]
    search: bool,
    /// Duration of one search trial.
    #[arg(long, value_parser = parse_duration, default_value = "2s")]
    trial: std::time::Duration,
    /// Stop the search when the interval is within this fraction of the rate.
    #[arg(long, default_value_t = 0.01)]
    precision: f64,
    /// Loss a search trial tolerates (fraction; 0 = zero loss).
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// No progress line.
    #[arg(long)]
    quiet: bool,
    /// Wrap every frame in tunnel outer headers: vxlan, geneve or ipip (--size stays the inner
    /// frame size; rates in bps and the report count the outer headers).
    #[arg(long, value_name = "vxlan|geneve|ipip")]
    encap: Option<String>,
    /// Outer source address (default: the TX port's first address of the remote's family).
    #[arg(long, value_name = "ADDR")]
    encap_local: Option<String>,
    /// Outer destination: the tunnel endpoint under test.
    #[arg(long, value_name = "ADDR")]
    encap_remote: Option<String>,
    /// VXLAN / Geneve network identifier.
    #[arg(long)]
    vni: Option<u32>,
    /// VXLAN / Geneve UDP destination port (default 4789 / 6081).
    #[arg(long, value_name = "N")]
    encap_dst_port: Option<u16>,
    /// A Geneve option CLASS:TYPE:HEX, e.g. 0x0102:0x01:0a0b0c0d (repeatable, sent in order).
    #[arg(long = "geneve-option", value_name = "CLASS:TYPE:HEX")]
    geneve_options: Vec<String>,
    /// Inner Ethernet destination (vxlan, geneve): the endpoint's tunnel interface MAC.
    #[arg(long, value_name = "MAC")]
    inner_dst_mac: Option<String>,
    /// Inner Ethernet source (vxlan, geneve; default: the TX port's MAC).
    #[arg(long, value_name = "MAC")]
    inner_src_mac: Option<String>,
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    ferroplane_dataplane::gen::rate::parse_duration(s)
}

fn load(path: &std::path::Path) -> Result<Config, ExitCode> {
    config::load(path).map_err(|errs| {
        eprint!("{errs}");
        if !errs.to_string().ends_with('\n') {
            eprintln!();
        }
        ExitCode::from(2)
    })
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Check { config } => match load(&config) {
            Ok(cfg) => {
                println!(
                    "{}: ok ({} ports, {} tunnels, {} routes, {} neighbors)",
                    config.display(),
                    cfg.ports.len(),
                    cfg.tunnels.len(),
                    cfg.routes.len(),
                    cfg.neighbors.len()
                );
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Cmd::Run { config } => {
            let cfg = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            match ferroplane_dataplane::daemon::run(cfg, Some(config.clone())) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("ferroplane: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Gen(g) => {
            let g = *g;
            let args = ferroplane_dataplane::gen::GenArgs {
                config: g.config,
                tx: g.tx,
                rx: g.rx,
                rate: g.rate,
                duration: g.duration,
                count: g.count,
                sizes: g.size,
                flows: g.flows,
                proto: g.proto,
                src: g.src,
                dst: g.dst,
                sport: g.sport,
                dport: g.dport,
                dst_mac: g.dst_mac,
                gateway: g.gateway,
                json: g.json,
                plot: g.plot,
                search: g.search,
                trial: g.trial,
                precision: g.precision,
                loss: g.loss,
                quiet: g.quiet,
                encap: g.encap,
                encap_local: g.encap_local,
                encap_remote: g.encap_remote,
                vni: g.vni,
                encap_dst_port: g.encap_dst_port,
                geneve_options: g.geneve_options,
                inner_dst_mac: g.inner_dst_mac,
                inner_src_mac: g.inner_src_mac,
            };
            match ferroplane_dataplane::gen::run_cli(args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("ferroplane gen: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Demo => {
            let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("ferroplane"));
            match ferroplane_dataplane::demo::run_demo(&exe) {
                Ok(()) => {
                    println!("demo finished: everything worked");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("ferroplane demo: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Replay { config, inputs, outputs } => {
            let cfg = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            // Replay runs every port as `memory`: each needs its MAC in the file.
            let tables = match build_tables(&cfg, &|_| None) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!(
                        "{}: {e} (replay runs every port as `memory`: give each port a `mac`)",
                        config.display()
                    );
                    return ExitCode::from(2);
                }
            };
            match replay(tables, &inputs, &outputs) {
                Ok(report) => {
                    println!("replayed {} frames", report.frames_in);
                    print!("{}", report.render());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("replay: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
