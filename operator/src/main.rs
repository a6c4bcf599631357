//! `ruche-operator`: the Ruche operator binary. One binary, a subcommand per mode.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ruche_operator::join_token::TokenArgs;
use ruche_operator::run::RunArgs;
use ruche_operator::sim::{self, Scenario, chart, report, scenario::BUNDLED};

mod token;

/// Ruche: a Kubernetes operator and control plane for WebRTC media fleets.
#[derive(Parser, Debug)]
#[command(name = "ruche-operator", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the operator: the fleet, media node and room controllers, with leader election,
    /// against the cluster of the in-cluster config or `KUBECONFIG`.
    Run(Box<RunArgs>),
    /// Mint a join token for a room, as a meeting app would: prints the JWT.
    Token {
        #[command(flatten)]
        token: TokenArgs,
        /// The join token key file (HMAC secret or Ed25519 private key in PEM).
        #[arg(long, conflicts_with = "fleet")]
        key_file: Option<PathBuf>,
        /// Read the key from this fleet's Secret in the cluster (`KUBECONFIG`).
        #[arg(long)]
        fleet: Option<String>,
        /// Namespace of the fleet (default: the kubeconfig's).
        #[arg(long, short)]
        namespace: Option<String>,
    },
    /// Simulate a day of meetings on a fleet, with the operator's own placement core.
    Simulate {
        /// A scenario file, or the name of a bundled scenario (`ministry-day`).
        scenario: String,
        /// Where to write the SVG chart of use per zone (default: `<scenario name>.svg`).
        #[arg(long)]
        chart: Option<PathBuf>,
        /// Override the scenario's seed.
        #[arg(long)]
        seed: Option<u64>,
        /// Print the outcome as JSON instead of the text report.
        #[arg(long)]
        json: bool,
        /// Run the day under every sizing policy (fixed fleet, buffer, buffer + schedule,
        /// buffer + schedule + bookings) and print them side by side.
        #[arg(long)]
        compare: bool,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Run(args) => run(*args),
        Command::Simulate {
            scenario,
            chart,
            seed,
            json,
            compare,
        } => simulate(&scenario, chart, seed, json, compare),
        Command::Token {
            token,
            key_file,
            fleet,
            namespace,
        } => token::mint(&token::Request {
            admission: token.admission(),
            key_file,
            fleet,
            namespace,
        }),
    }
}

fn run(args: RunArgs) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(ruche_operator::run::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn simulate(
    name: &str,
    chart_path: Option<PathBuf>,
    seed: Option<u64>,
    json: bool,
    compare: bool,
) -> ExitCode {
    let (text, file) = match std::fs::read_to_string(name) {
        Ok(text) => (text, name.to_string()),
        Err(e) => {
            let Some((bundled, text)) = BUNDLED.iter().find(|(n, _)| *n == name) else {
                let names: Vec<&str> = BUNDLED.iter().map(|(n, _)| *n).collect();
                eprintln!(
                    "error: cannot read scenario {name}: {e} (bundled scenarios: {})",
                    names.join(", ")
                );
                return ExitCode::from(2);
            };
            ((*text).to_string(), format!("{bundled} (bundled)"))
        }
    };
    let mut scenario = match Scenario::parse(&text, &file) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            if let Some(excerpt) = e.excerpt(&text) {
                eprintln!("{excerpt}");
            }
            return ExitCode::from(2);
        }
    };
    if let Some(seed) = seed {
        scenario.seed = seed;
    }
    if compare {
        return match sim::compare::compare(&scenario) {
            Ok(runs) if json => {
                println!("{:#}", serde_json::json!({ "runs": runs }));
                ExitCode::SUCCESS
            }
            Ok(runs) => {
                print!("{}", sim::compare::render(&scenario, &runs));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: simulation stopped: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let (outcome, timing) = match sim::run(&scenario) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: simulation stopped: {e}");
            return ExitCode::FAILURE;
        }
    };
    let chart_path = chart_path.unwrap_or_else(|| PathBuf::from(format!("{}.svg", scenario.name)));
    if let Some(dir) = chart_path.parent().filter(|d| !d.as_os_str().is_empty())
        && let Err(e) = std::fs::create_dir_all(dir)
    {
        eprintln!("error: cannot create {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    if let Err(e) = std::fs::write(&chart_path, chart::render(&outcome)) {
        eprintln!("error: cannot write chart {}: {e}", chart_path.display());
        return ExitCode::FAILURE;
    }
    if json {
        let doc = serde_json::json!({ "outcome": outcome, "timing": timing, "chart": chart_path });
        println!("{doc:#}");
    } else {
        print!("{}", report::render(&outcome));
        println!();
        print!("{}", report::render_timing(&timing));
        println!("Chart: {}", chart_path.display());
    }
    ExitCode::SUCCESS
}
