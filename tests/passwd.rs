//! `ferry passwd` as a script runs it: the real binary, the password piped on stdin.

use ferry::policy::passwd::{PasswordFile, Verified};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

/// What one run printed and how it ended.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `ferry passwd ARGS...` with `stdin` piped in; checks the password text never
/// appears in the output.
fn passwd(args: &[&str], stdin: &str) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("passwd")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ferry");
    let mut input = child.stdin.take().expect("piped stdin");
    // The command may exit before reading (usage errors): a broken pipe is fine then.
    let _ = input.write_all(stdin.as_bytes());
    drop(input);
    let out = child.wait_with_output().expect("wait for ferry");
    let run = Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    let secret = stdin.trim_end_matches(['\n', '\r']);
    if !secret.is_empty() {
        assert!(
            !run.stdout.contains(secret) && !run.stderr.contains(secret),
            "password printed: {} / {}",
            run.stdout,
            run.stderr
        );
    }
    run
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn add_change_delete_through_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("passwd");
    let f = file.to_str().unwrap();

    let r = passwd(&[f, "alice"], "Sup3r-secret\n");
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(r.stdout, format!("added user \"alice\" to {f}\n"));
    assert_eq!(mode(&file), 0o640);
    let r = passwd(&[f, "bob"], "b0b's pass phrase\r\n");
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let loaded = PasswordFile::load(&file).unwrap();
    assert_eq!(loaded.users().collect::<Vec<_>>(), ["alice", "bob"]);
    assert_eq!(loaded.verify("alice", b"Sup3r-secret"), Verified::Ok);
    assert_eq!(loaded.verify("bob", b"b0b's pass phrase"), Verified::Ok);

    let r = passwd(&[f, "alice"], "Chang3d-secret\n");
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(
        r.stdout,
        format!("changed the password of \"alice\" in {f}\n")
    );
    let loaded = PasswordFile::load(&file).unwrap();
    assert_eq!(loaded.verify("alice", b"Chang3d-secret"), Verified::Ok);
    assert_eq!(
        loaded.verify("alice", b"Sup3r-secret"),
        Verified::BadPassword
    );
    assert_eq!(mode(&file), 0o640);

    let r = passwd(&["--delete", f, "alice"], "");
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(r.stdout, format!("deleted user \"alice\" from {f}\n"));
    let loaded = PasswordFile::load(&file).unwrap();
    assert_eq!(loaded.users().collect::<Vec<_>>(), ["bob"]);
    assert_eq!(mode(&file), 0o640);

    let r = passwd(&["--delete", f, "alice"], "");
    assert_eq!(r.code, Some(1));
    assert_eq!(
        r.stderr,
        format!("ferry passwd: user \"alice\" not found in {f}\n")
    );
    assert_eq!(PasswordFile::load(&file).unwrap().len(), 1);
}

#[test]
fn a_malformed_file_is_refused_with_path_and_line_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("passwd");
    let f = file.to_str().unwrap();
    let text = "# users\n\ncarol:$argon2id$v=19$m=256,t=2,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4\ndave\n";
    std::fs::write(&file, text).unwrap();
    for args in [&[f, "alice"][..], &["--delete", f, "carol"][..]] {
        let r = passwd(args, "an0ther-secret\n");
        assert_eq!(r.code, Some(2), "{args:?}: {}", r.stderr);
        assert_eq!(
            r.stderr,
            format!(
                "ferry passwd: {f}:4: missing ':' between user name and hash \
                 (the file was not changed)\n"
            )
        );
        assert!(!r.stderr.contains("nf65EO"), "hash printed");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), text);
    }
}

#[test]
fn refusals() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("passwd");
    let f = file.to_str().unwrap();

    let r = passwd(&[f, "alice"], "\n");
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (Some(1), "ferry passwd: empty password refused\n")
    );
    let r = passwd(&[f, "alice"], "");
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(!file.exists(), "nothing written on a refusal");

    let r = passwd(&[f, "al ice"], "x-secret\n");
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (Some(2), "ferry passwd: user name contains whitespace\n")
    );
    let r = passwd(&[f], "x-secret\n");
    assert_eq!(r.code, Some(2), "usage error: {}", r.stderr);
    let r = passwd(&["--delete", f, "alice"], "");
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (
            Some(1),
            format!("ferry passwd: {f} does not exist\n").as_str()
        )
    );
    let missing_dir = dir.path().join("nope").join("passwd");
    let r = passwd(&[missing_dir.to_str().unwrap(), "alice"], "x-secret\n");
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(r.stderr.contains("(create temporary file)"), "{}", r.stderr);
}
