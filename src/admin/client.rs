//! `ferry status [--config FILE] [--json]` and `ferry reload [--config FILE]`: ask the
//! running ferry through its admin socket (the config file, or the built-in defaults,
//! say where it is) and print its answer.

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
        Ask::Status { json: false } => "status\n",
        Ask::Status { json: true } => "status json\n",
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
    if ask != Ask::Reload {
        print!("{answer}");
        return ExitCode::SUCCESS;
    }
    // A reload's answer: its exit status on the first line, then what to print.
    let (code, text) = answer.split_once('\n').unwrap_or(("3", &answer));
    match code {
        "0" => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        "1" => {
            eprint!("{text}");
            ExitCode::FAILURE
        }
        _ => {
            eprintln!("ferry: an answer not understood: {answer}");
            ExitCode::from(3)
        }
    }
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
