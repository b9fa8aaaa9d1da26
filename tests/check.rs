//! `ferry check` and start-up on the files `[auth]` and `[tls]` name: a malformed password
//! line, a missing certificate, a key of another certificate are reported with the file
//! (and line) and exit 2; secrets are masked in what `ferry check` prints; ferry warns at
//! start about anonymous access on a non-loopback address and about secrets readable by
//! every user.

mod common;

use common::pki::Ca;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

fn ferry(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn a_malformed_password_file_is_reported_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let hash = ferry::policy::passwd::hash_password(b"pw").unwrap();
    let passwd = write(
        dir.path(),
        "passwd",
        &format!("# users\nalice:{hash}\nbob-without-hash\n"),
    );
    let config = write(
        dir.path(),
        "ferry.toml",
        &format!("[auth]\npassword_file = \"{passwd}\"\n"),
    );
    let (code, out, err) = ferry(&["check", &config]);
    assert_eq!(code, 2, "{out}{err}");
    assert_eq!(
        err.trim(),
        format!("{config}: auth.password_file: {passwd}:3: missing ':' between user name and hash")
    );
    // Start-up refuses it the same way, before binding anything.
    let (code, _, err) = ferry(&["--config", &config]);
    assert_eq!(code, 2);
    assert!(err.contains(&format!("{passwd}:3: missing ':'")), "{err}");
}

#[test]
fn unreadable_or_mismatched_certificates_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "check");
    let one = ca.server();
    let other = ca.client("x", "x.example");
    let config = write(
        dir.path(),
        "missing.toml",
        "[mqtt]\ntls_listen = \"127.0.0.1:0\"\n[tls]\ncert_file = \"/nonexistent/server.crt\"\nkey_file = \"/nonexistent/server.key\"\n",
    );
    let (code, _, err) = ferry(&["check", &config]);
    assert_eq!(code, 2);
    assert!(
        err.starts_with(&format!(
            "{config}: tls.cert_file /nonexistent/server.crt: "
        )),
        "{err}"
    );
    let config = write(
        dir.path(),
        "mismatch.toml",
        &format!(
            "[mqtt]\ntls_listen = \"127.0.0.1:0\"\n[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
            one.cert.display(),
            other.key.display()
        ),
    );
    let (code, _, err) = ferry(&["check", &config]);
    assert_eq!(code, 2);
    assert_eq!(
        err.trim(),
        format!(
            "{config}: tls.key_file {} does not belong to tls.cert_file {}",
            other.key.display(),
            one.cert.display()
        )
    );
    let config = write(
        dir.path(),
        "good.toml",
        &format!(
            "[mqtt]\ntls_listen = \"127.0.0.1:0\"\n[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
            one.cert.display(),
            one.key.display()
        ),
    );
    let (code, out, err) = ferry(&["check", &config]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("tls_listen = \"127.0.0.1:0\""), "{out}");
}

#[test]
fn check_masks_every_secret() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "ferry.toml",
        "[[upstream]]\nname = \"cloud\"\nurl = \"mqtt://127.0.0.1:1\"\nusername = \"gw\"\npassword = \"upstream-secret\"\n\
         [auth]\nnats_token = \"token-secret-123\"\n",
    );
    let (code, out, err) = ferry(&["check", &config]);
    assert_eq!(code, 0, "{err}");
    assert!(
        !out.contains("upstream-secret") && !out.contains("token-secret-123"),
        "{out}"
    );
    assert!(out.contains("password = \"********\""), "{out}");
    assert!(out.contains("nats_token = \"********\""), "{out}");
    assert!(out.contains("allow_anonymous = false"), "{out}");
}

#[test]
fn start_up_warns_about_anonymous_access_and_readable_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[mqtt]\nlisten = \"0.0.0.0:0\"\n[nats]\nlisten = \"127.0.0.1:0\"\n[store]\ndir = \"{}\"\n\
         [[upstream]]\nname = \"cloud\"\nurl = \"mqtt://127.0.0.1:1\"\nusername = \"gw\"\npassword = \"pw\"\n",
        dir.path().join("store").display()
    );
    // The test harness writes ferry.toml with mode 0644: readable by every user.
    let f = common::Ferry::start(dir.path(), &config);
    let mode = std::fs::metadata(dir.path().join("ferry.toml"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o004, 0o004);
    f.wait_log(
        &["accepting anonymous clients", "listener=MQTT tcp"],
        std::time::Duration::from_secs(10),
    );
    f.wait_log(
        &["holds secrets and is readable by every user"],
        std::time::Duration::from_secs(10),
    );
    let log = f.log_text();
    // The loopback NATS listener is not exposed: no warning for it.
    assert!(!log.contains("listener=NATS"), "{log}");
}
