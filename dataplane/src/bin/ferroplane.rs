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
                    "{}: ok ({} ports, {} routes, {} neighbors)",
                    config.display(),
                    cfg.ports.len(),
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
