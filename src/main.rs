//! The `ferry` command: run the broker, or check a config file.

use ferry::config::{self, Config};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// How long a graceful shutdown may take before ferry exits anyway. Everything acked is
/// already durable, so cutting it short loses nothing that was promised.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    use ferry::args::Invocation;
    let args: Vec<String> = std::env::args().skip(1).collect();
    match ferry::args::parse(&args) {
        Ok(Invocation::Run { config }) => run(config),
        Ok(Invocation::Check { file }) => check(&file),
        Ok(Invocation::Defaults) => {
            print!("{}", config::DEFAULT_TOML);
            ExitCode::SUCCESS
        }
        Ok(Invocation::Passwd { delete, file, user }) => {
            ferry::policy::passwd_cli::run(&ferry::policy::passwd_cli::PasswdArgs {
                delete,
                file,
                user,
            })
        }
        Ok(Invocation::Store { args }) => ferry::store::cli::main(&args),
        Ok(Invocation::Unpack) => ferry::pack::cli::main(),
        Ok(Invocation::Status { config, json }) => ferry::admin::client::main(
            ferry::admin::client::Ask::Status { json },
            config.as_deref(),
        ),
        Ok(Invocation::Reload { config }) => {
            ferry::admin::client::main(ferry::admin::client::Ask::Reload, config.as_deref())
        }
        Ok(Invocation::Help) => {
            print!("{}", ferry::args::HELP);
            ExitCode::SUCCESS
        }
        Ok(Invocation::Version) => {
            println!("ferry {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ferry: {e}\nRun `ferry --help` for the forms.");
            ExitCode::from(2)
        }
    }
}

fn check(file: &std::path::Path) -> ExitCode {
    match config::load(file) {
        Ok(cfg) => {
            let problems = ferry::policy::check_files(&cfg);
            if !problems.is_empty() {
                for p in problems {
                    eprintln!("{}: {p}", file.display());
                }
                return ExitCode::from(2);
            }
            println!(
                "# {}: ok. Effective configuration (secrets masked):",
                file.display()
            );
            print!("{}", cfg.to_toml_masked());
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
    let problems = ferry::policy::check_files(&cfg);
    if !problems.is_empty() {
        let origin = path.as_ref().map(|p| p.display().to_string());
        for p in problems {
            match &origin {
                Some(o) => eprintln!("{o}: {p}"),
                None => eprintln!("ferry: {p}"),
            }
        }
        return ExitCode::from(2);
    }
    ferry::logging::init(&cfg.log.level);
    warn_if_readable(path.as_deref(), &cfg);
    // One event-loop thread, as mosquitto has: every connection and the router run on
    // it; the upstream links too with `runtime.worker_threads = 1`, or else on forwarding
    // threads of their own (`forward/workers.rs`); the store writer and the blocking pool
    // (redb reads, password hashing) on their own threads. Tasks woken together run in the order the
    // kernel reported their sockets readable (FIFO), so packets sent on different
    // connections are handled in the order they arrived: a SUBSCRIBE written just before
    // another client's PUBLISH takes effect first (the Paho case test_subscribe_options
    // relies on it). A multi-threaded runtime runs the task woken last first (its LIFO
    // slot) or on another core, and lost that PUBLISH in 1 to 4 runs of 10. On 2 cores
    // it was no faster (docs/benchmarks.md).
    // The blocking pool (store reads for the links, password checks, name lookups) is
    // bounded too: tokio's default is 512 threads. Work beyond it waits its turn.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(BLOCKING_THREADS)
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ferry: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let main: ferry::startup::Driven = Box::pin(async move {
        let source = path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "built-in defaults".into());
        let gateway = ferry::forward::gateway_id(&cfg.gateway.id);
        let board = cfg.board.as_deref().unwrap_or("none");
        tracing::info!(version = env!("CARGO_PKG_VERSION"), config = %source, %gateway, board, "ferry starting");
        let mut running = match ferry::broker::start(cfg).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("{e}");
                return start_failure(&e);
            }
        };
        let notifier = service_ready();
        ferry::startup::release_memory();
        let signal = serve_until_stopped(&mut running, path.as_deref(), notifier.as_deref()).await;
        tracing::info!(%signal, "shutting down");
        if let Some(n) = &notifier {
            if let Err(e) = n.stopping() {
                tracing::debug!("systemd notification failed: {e}");
            }
        }
        running.shutdown(SHUTDOWN_GRACE).await;
        tracing::info!("ferry stopped");
        ExitCode::SUCCESS
    });
    runtime.block_on(main)
}

/// Threads of the blocking pool at most: a link's store read each (one per upstream lane
/// at a time), the password checks (`policy::VERIFY_SLOTS` at once), name lookups.
const BLOCKING_THREADS: usize = 8;

/// The exit status for a failed start: 3 when the store needs an operator (damaged, or
/// missing where the marker says it was), so that systemd's `RestartPreventExitStatus`
/// stops there instead of restarting into the same failure every 2 s; 1 otherwise (a
/// port in use, say, may well be free at the next attempt).
fn start_failure(e: &ferry::broker::StartError) -> ExitCode {
    if e.needs_operator() {
        ExitCode::from(3)
    } else {
        ExitCode::FAILURE
    }
}

/// Secrets in files others can read are not secrets: say so at start.
fn warn_if_readable(config: Option<&std::path::Path>, cfg: &Config) {
    let secret_config =
        cfg.upstream.iter().any(|u| u.password.is_some()) || cfg.auth.nats_token.is_some();
    let files = config
        .filter(|_| secret_config)
        .into_iter()
        .chain(cfg.auth.password_file.as_deref())
        .chain(cfg.tls.key_file.as_deref())
        .chain(cfg.upstream.iter().filter_map(|u| u.key_file.as_deref()));
    for f in files {
        if ferry::policy::readable_by_others(f) {
            tracing::warn!(file = %f.display(), "this file holds secrets and is readable by every user on this machine: chmod 640 (owner root, group ferry)");
        }
    }
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

/// Runs until SIGTERM or SIGINT (returned by name), reloading the config on SIGHUP and
/// on each `ferry reload` that comes through the admin socket. systemd hears RELOADING=1
/// before a reload and READY=1 after it.
async fn serve_until_stopped(
    running: &mut ferry::broker::Running,
    path: Option<&std::path::Path>,
    notifier: Option<&ferry::service::Notifier>,
) -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        // Without signal handlers the only way out is being killed, which is still safe.
        std::future::pending::<()>().await;
        return "none";
    };
    let mut requests = running.reloads.take();
    loop {
        let reply = tokio::select! {
            _ = term.recv() => return "SIGTERM",
            _ = int.recv() => return "SIGINT",
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reading the configuration again");
                None
            }
            Some(reply) = async { match requests.as_mut() { Some(r) => r.recv().await, None => None } } => {
                tracing::info!("ferry reload: reading the configuration again");
                Some(reply)
            }
        };
        if let Some(n) = notifier {
            let _ = n.reloading();
        }
        let outcome = running.reload_from(path).await;
        if let Some(n) = notifier {
            let _ = n.ready();
        }
        if let Some(reply) = reply {
            let _ = reply.send(outcome);
        }
    }
}
