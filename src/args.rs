//! The `ferry` command line, parsed by hand: a handful of fixed forms. clap, which parsed
//! them before, was 160 KiB of the 5 MiB binary budget for the SD-card gateways, more than
//! any feature it helped with.

use std::path::PathBuf;

/// What `ferry ARGS` asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Invocation {
    /// Run the broker, on the built-in defaults or the given TOML file.
    Run {
        config: Option<PathBuf>,
    },
    /// `ferry check FILE`.
    Check {
        file: PathBuf,
    },
    /// `ferry defaults`.
    Defaults,
    /// `ferry passwd [-D|--delete] FILE USER`.
    Passwd {
        delete: bool,
        file: PathBuf,
        user: String,
    },
    /// `ferry store ...`: the words after `store`, parsed by [`crate::store::cli`].
    Store {
        args: Vec<String>,
    },
    /// `ferry unpack`: one `ferry-batch-v1` batch from stdin as JSON lines.
    Unpack,
    /// `ferry status [--config FILE] [--json]`: ask the running ferry.
    Status {
        config: Option<PathBuf>,
        json: bool,
    },
    /// `ferry reload [--config FILE]`: the running ferry reads its config again.
    Reload {
        config: Option<PathBuf>,
    },
    Help,
    Version,
}

/// `ferry --help`.
pub const HELP: &str = "\
ferry: edge broker. MQTT (3.1, 3.1.1, 5) and NATS clients publish to it, local subscribers
get events at once, and events selected by [[forward]] rules are stored durably and
forwarded to upstream brokers, resuming where they stopped after an outage or crash.

Usage:
  ferry [-c FILE]              run the broker (also: ferry [-c FILE] run)
  ferry check FILE             validate FILE: exit 0 and print the effective configuration
                               (secrets masked), or print every problem as
                               file:line:column and exit 2
  ferry defaults               print the built-in configuration, every key commented
  ferry passwd [-D] FILE USER  add USER to a password file or change its password, read
                               from the terminal without echo or from the first line of
                               stdin; -D (--delete) removes USER. Exit 0 ok, 1 failure,
                               2 usage or a malformed FILE (left unchanged)
  ferry store COMMAND DIR ...  look into, check, repair or replay a stopped ferry's store:
                               info, check, dump, dlq list|replay|purge, salvage
                               (ferry store --help)
  ferry unpack                 read one packed batch (ferry-batch-v1) from stdin and print
                               its events as JSON lines. Exit 0 ok, 1 malformed batch
  ferry status [-c FILE] [--json]
                               ask the ferry running with FILE (its admin.socket) how it
                               is doing: connections, rates, store, each upstream
  ferry reload [-c FILE]       have it read FILE again (as SIGHUP does) and say what was
                               applied and what needs a restart. Exit 0 applied, 1 FILE
                               refused (ferry goes on unchanged), 3 no ferry answers
  ferry --help | --version

Options:
  -c, --config FILE            TOML configuration file. Without it ferry runs on built-in
                               defaults: MQTT on 0.0.0.0:1883, NATS on 0.0.0.0:4222, store
                               in ./data, no upstreams (`ferry defaults` prints them).

RUST_LOG (e.g. RUST_LOG=debug) overrides [log] level.

Exit status: 0 ok, 1 runtime failure, 2 invalid configuration or usage, 3 damaged or
missing store (restarting cannot help: see the message, and docs/operations.md).
";

/// Parses the arguments after the program name.
pub fn parse(args: &[String]) -> Result<Invocation, String> {
    let mut config = None;
    let mut rest: Vec<&str> = Vec::new();
    let mut words = args.iter().map(String::as_str);
    while let Some(w) = words.next() {
        // Everything after `store` belongs to it, options included.
        if rest.first() == Some(&"store") {
            rest.push(w);
            continue;
        }
        match w {
            "-c" | "--config" => {
                let file = words.next().ok_or_else(|| format!("{w} needs a FILE"))?;
                config = Some(PathBuf::from(file));
            }
            _ if w.starts_with("--config=") => {
                config = Some(PathBuf::from(&w["--config=".len()..]));
            }
            "-h" | "--help" => return Ok(Invocation::Help),
            "-V" | "--version" => return Ok(Invocation::Version),
            _ => rest.push(w),
        }
    }
    let (command, operands) = match rest.split_first() {
        None => return Ok(Invocation::Run { config }),
        Some((c, operands)) => (*c, operands),
    };
    let only_run = |what: Invocation| {
        if config.is_some() {
            Err(format!("{command}: --config is only for running ferry"))
        } else {
            Ok(what)
        }
    };
    match (command, operands) {
        ("run", []) => Ok(Invocation::Run { config }),
        ("check", [file]) => only_run(Invocation::Check { file: file.into() }),
        ("check", _) => Err("check: expected one FILE".into()),
        ("defaults", []) => only_run(Invocation::Defaults),
        ("unpack", []) => only_run(Invocation::Unpack),
        ("status", []) => Ok(Invocation::Status {
            config,
            json: false,
        }),
        ("status", ["--json"]) => Ok(Invocation::Status { config, json: true }),
        ("status", _) => Err("status: the only option is --json".into()),
        ("reload", []) => Ok(Invocation::Reload { config }),
        ("help", _) => Ok(Invocation::Help),
        ("passwd", operands) => {
            let delete = operands.iter().any(|w| matches!(*w, "-D" | "--delete"));
            let rest: Vec<&str> = operands
                .iter()
                .copied()
                .filter(|w| !matches!(*w, "-D" | "--delete"))
                .collect();
            if let Some(flag) = rest.iter().find(|w| w.starts_with('-') && w.len() > 1) {
                return Err(format!("passwd: unknown option {flag:?}"));
            }
            match rest.as_slice() {
                [file, user] => only_run(Invocation::Passwd {
                    delete,
                    file: file.into(),
                    user: user.to_string(),
                }),
                _ => Err("passwd: expected FILE and USER".into()),
            }
        }
        ("store", operands) => only_run(Invocation::Store {
            args: operands.iter().map(|w| w.to_string()).collect(),
        }),
        (flag, _) if flag.starts_with('-') => Err(format!("unknown option {flag:?}")),
        ("run" | "defaults" | "unpack" | "reload", _) => {
            Err(format!("{command}: takes no operands"))
        }
        (other, _) => Err(format!(
            "unknown command {other:?}: expected run, check, defaults, passwd, store, unpack, status or reload"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Invocation, String> {
        let words: Vec<String> = s.split_whitespace().map(String::from).collect();
        parse(&words)
    }

    #[test]
    fn every_form_parses() {
        assert_eq!(p(""), Ok(Invocation::Run { config: None }));
        let f = Some(PathBuf::from("f.toml"));
        assert_eq!(p("-c f.toml"), Ok(Invocation::Run { config: f.clone() }));
        assert_eq!(
            p("--config f.toml"),
            Ok(Invocation::Run { config: f.clone() })
        );
        assert_eq!(
            p("--config=f.toml run"),
            Ok(Invocation::Run { config: f.clone() })
        );
        assert_eq!(p("run -c f.toml"), Ok(Invocation::Run { config: f }));
        assert_eq!(
            p("check a.toml"),
            Ok(Invocation::Check {
                file: "a.toml".into()
            })
        );
        assert_eq!(p("defaults"), Ok(Invocation::Defaults));
        assert_eq!(p("unpack"), Ok(Invocation::Unpack));
        assert_eq!(
            p("status"),
            Ok(Invocation::Status {
                config: None,
                json: false
            })
        );
        assert_eq!(
            p("status --config f.toml --json"),
            Ok(Invocation::Status {
                config: Some("f.toml".into()),
                json: true
            })
        );
        assert_eq!(
            p("-c f.toml reload"),
            Ok(Invocation::Reload {
                config: Some("f.toml".into())
            })
        );
        assert!(p("reload now").is_err());
        assert!(p("status --yaml").is_err());
        assert_eq!(
            p("passwd -D /etc/ferry/passwd alice"),
            Ok(Invocation::Passwd {
                delete: true,
                file: "/etc/ferry/passwd".into(),
                user: "alice".into()
            })
        );
        assert_eq!(
            p("passwd pw bob"),
            Ok(Invocation::Passwd {
                delete: false,
                file: "pw".into(),
                user: "bob".into()
            })
        );
        assert_eq!(
            p("store dump /d --limit 3 -h"),
            Ok(Invocation::Store {
                args: vec![
                    "dump".into(),
                    "/d".into(),
                    "--limit".into(),
                    "3".into(),
                    "-h".into()
                ]
            })
        );
        assert_eq!(p("--help"), Ok(Invocation::Help));
        assert_eq!(p("help"), Ok(Invocation::Help));
        assert_eq!(p("-V"), Ok(Invocation::Version));
        assert_eq!(p("--version"), Ok(Invocation::Version));
    }

    #[test]
    fn mistakes_are_named() {
        for (bad, says) in [
            ("-c", "-c needs a FILE"),
            ("check", "check: expected one FILE"),
            ("check a b", "check: expected one FILE"),
            ("-c f check a", "check: --config is only for running ferry"),
            ("passwd f", "passwd: expected FILE and USER"),
            ("passwd -x f u", "passwd: unknown option \"-x\""),
            ("defaults x", "defaults: takes no operands"),
            ("unpack b.bin", "unpack: takes no operands"),
            ("-c f unpack", "unpack: --config is only for running ferry"),
            ("--frobnicate", "unknown option \"--frobnicate\""),
            ("serve", "unknown command \"serve\""),
        ] {
            let e = p(bad).unwrap_err();
            assert!(e.starts_with(says), "{bad}: {e}");
        }
    }
}
