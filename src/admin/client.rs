//! `ferry status [--config FILE] [--json]` and `ferry reload [--config FILE]`: ask the
//! running ferry through its admin socket (the config file, or the built-in defaults,
//! say where it is).

use crate::config::{self, Config};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

/// What to ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    Status { json: bool },
    Reload,
}

/// Runs one request; exit 0 when answered (and, for a reload, applied), 1 when the
/// reload was refused, 2 when the config cannot be read, 3 when no ferry answers.
pub fn main(ask: Ask, config: Option<&Path>) -> ExitCode {
    let socket = match config {
        Some(p) => match config::load(p) {
            Ok(c) => c.admin_socket(),
            // Not valid: the running ferry is still asked (a reload then reports and
            // counts the problems there) when the file says where it listens.
            Err(e) => match std::fs::read_to_string(p)
                .ok()
                .and_then(|t| config::admin_socket_of(&t))
            {
                Some(socket) => socket,
                None => {
                    eprint!("{e}");
                    return ExitCode::from(2);
                }
            },
        },
        None => Config::default().admin_socket(),
    };
    let Some(socket) = socket else {
        eprintln!(
            "ferry: admin.socket is \"\" in this configuration: no admin socket to ask (send SIGHUP to reload)"
        );
        return ExitCode::from(2);
    };
    let request = match ask {
        Ask::Status { .. } => "status\n",
        Ask::Reload => "reload\n",
    };
    // A reload reads files and grants every subscription again: allow it time.
    let answer = match ask_socket(&socket, request, Duration::from_secs(30)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!(
                "ferry: no answer on the admin socket {}: {e} (is ferry running with this configuration?)",
                socket.display()
            );
            return ExitCode::from(3);
        }
    };
    let value: serde_json::Value = match serde_json::from_str(&answer) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("ferry: the answer is not JSON ({e}): {answer}");
            return ExitCode::from(3);
        }
    };
    match ask {
        Ask::Status { json: true } => {
            println!("{}", answer.trim_end());
            ExitCode::SUCCESS
        }
        Ask::Status { json: false } => {
            print!("{}", super::status::render_text(&value));
            ExitCode::SUCCESS
        }
        Ask::Reload => reload_report(&value),
    }
}

fn reload_report(v: &serde_json::Value) -> ExitCode {
    let list = |k: &str| -> Vec<String> {
        v[k].as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    if !v["ok"].as_bool().unwrap_or(false) {
        for p in list("problems") {
            eprintln!("{p}");
        }
        eprintln!("ferry: reload refused; ferry goes on with the configuration it had");
        return ExitCode::FAILURE;
    }
    let applied = list("applied");
    println!(
        "reloaded: {}",
        if applied.is_empty() {
            "nothing changed that applies at run time".to_string()
        } else {
            format!("applied {}", applied.join(", "))
        }
    );
    let revoked = v["revoked"].as_u64().unwrap_or(0);
    if revoked > 0 {
        println!(
            "{revoked} subscribers disconnected: they lost every right on a subscription (clients whose credentials were removed are disconnected at their next packet)"
        );
    }
    for (key, what) in [
        ("upstreams_started", "upstream links started"),
        (
            "upstreams_restarted",
            "upstream links restarted from their cursors",
        ),
        (
            "upstreams_stopped",
            "upstream links stopped (their backlog is kept)",
        ),
    ] {
        let names = list(key);
        if !names.is_empty() {
            println!("{what}: {}", names.join(", "));
        }
    }
    for n in list("not_applied") {
        println!("not applied: {n}");
    }
    let restart = list("restart_needed");
    if !restart.is_empty() {
        println!("needs a restart to take effect: {}", restart.join(", "));
    }
    ExitCode::SUCCESS
}

fn ask_socket(path: &Path, request: &str, limit: Duration) -> std::io::Result<String> {
    let mut s = UnixStream::connect(path)?;
    s.set_read_timeout(Some(limit))?;
    s.set_write_timeout(Some(limit))?;
    s.write_all(request.as_bytes())?;
    let mut answer = String::new();
    s.take(16 * 1024 * 1024).read_to_string(&mut answer)?;
    Ok(answer)
}
