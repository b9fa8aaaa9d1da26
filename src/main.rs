//! The `ferry` command: run the broker, or check a config file.

use clap::{Parser, Subcommand};
use ferry::config::{self, Config};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tracing_subscriber::EnvFilter;

/// How long a graceful shutdown may take before ferry exits anyway. Everything acked is
/// already durable, so cutting it short loses nothing that was promised.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

#[derive(Parser)]
#[command(
    name = "ferry",
    version,
    about = "Edge broker: MQTT and NATS in, durable store, batched forwarding upstream",
    long_about = "Edge broker: MQTT (3.1.1) and NATS clients publish to it, local subscribers \
        get events at once, and events selected by [[forward]] rules are stored durably and \
        forwarded to upstream brokers, resuming where they stopped after an outage or crash.\n\n\
        With no --config, ferry runs on built-in defaults: MQTT on 0.0.0.0:1883, NATS on \
        0.0.0.0:4222, store in ./data, no upstreams. `ferry defaults` prints them as TOML.\n\
        RUST_LOG (e.g. RUST_LOG=debug) overrides [log] level.",
    after_help = "Exit status: 0 ok, 1 runtime failure, 2 invalid configuration."
)]
struct Cli {
    /// TOML configuration file.
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker (the default when no command is given).
    Run,
    /// Validate FILE: exit 0 and print the effective configuration, or print every
    /// problem as file:line:column and exit 2.
    Check {
        /// The configuration file to check.
        file: PathBuf,
    },
    /// Print the built-in default configuration, with comments.
    Defaults,
    /// Add a user to a password file or change its password; --delete removes one.
    ///
    /// The password is read from the terminal without echo (asked twice), or from the
    /// first line of stdin when that is not a terminal: `echo secret | ferry passwd FILE
    /// USER`. Exit status: 0 ok, 1 failure, 2 usage or a malformed FILE (left unchanged).
    Passwd(ferry::policy::passwd_cli::PasswdArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Check { file }) => check(&file),
        Some(Command::Defaults) => {
            print!("{}", config::DEFAULT_TOML);
            ExitCode::SUCCESS
        }
        Some(Command::Passwd(args)) => ferry::policy::passwd_cli::run(&args),
        Some(Command::Run) | None => run(cli.config),
    }
}

fn check(file: &std::path::Path) -> ExitCode {
    match config::load(file) {
        Ok(cfg) => {
            println!("# {}: ok. Effective configuration:", file.display());
            print!("{}", cfg.to_toml());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprint!("{e}");
            if !e.to_string().ends_with('\n') {
                eprintln!();
            }
            ExitCode::from(2)
        }
    }
}

fn run(path: Option<PathBuf>) -> ExitCode {
    let cfg = match &path {
        Some(p) => match config::load(p) {
            Ok(c) => c,
            Err(e) => {
                eprint!("{e}");
                if !e.to_string().ends_with('\n') {
                    eprintln!();
                }
                return ExitCode::from(2);
            }
        },
        None => Config::default(),
    };
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&cfg.log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ferry: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let source = path
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "built-in defaults".into());
        let gateway = ferry::forward::gateway_id(&cfg.gateway.id);
        tracing::info!(version = env!("CARGO_PKG_VERSION"), config = %source, %gateway, "ferry starting");
        let running = match ferry::broker::start(cfg).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("{e:#}");
                return ExitCode::FAILURE;
            }
        };
        let notifier = service_ready();
        let signal = wait_for_signal().await;
        tracing::info!(%signal, "shutting down");
        if let Some(n) = &notifier {
            if let Err(e) = n.stopping() {
                tracing::debug!("systemd notification failed: {e}");
            }
        }
        running.shutdown(SHUTDOWN_GRACE).await;
        tracing::info!("ferry stopped");
        ExitCode::SUCCESS
    })
}

/// Tells systemd (when it started us with `Type=notify`) that ferry is ready, and keeps
/// its watchdog fed from a runtime task: if the runtime stops making progress, the pings
/// stop and systemd restarts ferry.
fn service_ready() -> Option<std::sync::Arc<ferry::service::Notifier>> {
    let notifier = match ferry::service::Notifier::from_env() {
        Ok(Some(n)) => std::sync::Arc::new(n),
        Ok(None) => return None,
        Err(e) => {
            tracing::warn!("systemd notification disabled: {e}");
            return None;
        }
    };
    if let Err(e) = notifier.ready() {
        tracing::warn!("systemd readiness notification failed: {e}");
    }
    if let Some(every) = ferry::service::watchdog_interval() {
        tracing::info!(interval = ?every, "systemd watchdog enabled");
        let n = notifier.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                if let Err(e) = n.watchdog() {
                    tracing::debug!("systemd watchdog ping failed: {e}");
                }
            }
        });
    }
    Some(notifier)
}

async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the only way out is being killed, which is still safe.
        std::future::pending::<()>().await;
        return "none";
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}
