//! The two reference decoders of `ferry-batch-v1` against the committed vectors: the built
//! `ferry unpack` and tools/ferry_batch.py must both print each vector's `.jsonl` byte for
//! byte, and both refuse every batch in malformed/ with exit status 1.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn vectors(sub: &str) -> Vec<PathBuf> {
    let dir = root().join("tests/vectors/batch").join(sub);
    let mut bins: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "bin"))
        .collect();
    bins.sort();
    assert!(!bins.is_empty(), "no vectors in {}", dir.display());
    bins
}

/// Runs `cmd` with `input` on stdin.
fn run(mut cmd: Command, input: &[u8]) -> Output {
    let mut child = cmd
        .current_dir(root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

fn ferry(input: &[u8]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
    cmd.arg("unpack");
    run(cmd, input)
}

fn python(input: &[u8]) -> Output {
    let mut cmd = Command::new("python3");
    cmd.arg("tools/ferry_batch.py");
    run(cmd, input)
}

/// The lz4 vectors need the Python `lz4` package: its absence is a failed test, not a
/// skipped one.
fn require_python_lz4() {
    let out = Command::new("python3")
        .args(["-c", "import lz4.block"])
        .output()
        .expect("python3 is needed for tests/pack.rs");
    assert!(
        out.status.success(),
        "the Python lz4 package is missing (tools/ferry_batch.py needs it for lz4 batches): \
         run `bash tests/run.sh`, which installs tests/python/requirements.txt"
    );
}

fn show(name: &str, p: &Path, out: &Output) -> String {
    format!(
        "{name} on {}: exit {:?}, stderr: {}",
        p.display(),
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn both_decoders_print_the_committed_lines() {
    require_python_lz4();
    for bin in vectors("") {
        let input = std::fs::read(&bin).unwrap();
        let want = std::fs::read(bin.with_extension("jsonl")).unwrap();
        for (name, out) in [
            ("ferry unpack", ferry(&input)),
            ("ferry_batch.py", python(&input)),
        ] {
            assert_eq!(out.status.code(), Some(0), "{}", show(name, &bin, &out));
            assert!(
                out.stdout == want,
                "{name} on {}: output differs from the .jsonl:\n{}",
                bin.display(),
                String::from_utf8_lossy(&out.stdout)
            );
        }
    }
}

#[test]
fn both_decoders_refuse_malformed_batches() {
    for bin in vectors("malformed") {
        let input = std::fs::read(&bin).unwrap();
        for (name, out) in [
            ("ferry unpack", ferry(&input)),
            ("ferry_batch.py", python(&input)),
        ] {
            assert_eq!(out.status.code(), Some(1), "{}", show(name, &bin, &out));
            assert!(out.stdout.is_empty(), "{}", show(name, &bin, &out));
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(err.lines().count(), 1, "{}", show(name, &bin, &out));
            assert!(
                err.contains("malformed batch: "),
                "{}",
                show(name, &bin, &out)
            );
        }
    }
}

#[test]
fn unpack_takes_no_operands() {
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["unpack", "batch.bin"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new("python3")
        .args(["tools/ferry_batch.py", "batch.bin"])
        .current_dir(root())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
