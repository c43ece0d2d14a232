//! `fpctl`: ferroplane's control client. Human tables by default, `--json` for scripts; exit
//! status 1 when the daemon answers with an error or cannot be reached.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ferroplane_ctl::{call, Reply, Request, DEFAULT_SOCKET};

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
    Stats,
    /// Ports.
    Port {
        #[command(subcommand)]
        cmd: PortCmd,
    },
}

#[derive(Subcommand)]
enum PortCmd {
    /// List ports with addresses and AF_XDP modes.
    Show,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let req = match cli.cmd {
        Cmd::Version => Request::Version,
        Cmd::Stats => Request::Stats,
        Cmd::Port { cmd: PortCmd::Show } => Request::PortShow,
    };
    let reply = match call(&cli.socket, req) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("fpctl: {e}");
            return ExitCode::FAILURE;
        }
    };
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
        Reply::Stats(s) => {
            println!(
                "{:<12} {:>12} {:>14} {:>12} {:>14}",
                "port", "rx_packets", "rx_bytes", "tx_packets", "tx_bytes"
            );
            for p in &s.ports {
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
