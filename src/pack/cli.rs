//! `ferry unpack`: one batch from stdin, its events on stdout as JSON lines
//! ([`super::jsonl`]). For checking what a link sends, and as the reference the cloud
//! side's decoder is compared with.
//!
//! Exit status: 0 done; 1 the input is not a valid batch (one line on stderr says why) or
//! stdout failed; 2 usage (handled by `ferry::args`).

use super::{MAX_RAW_LEN, jsonl, unpack};
use std::io::{Read, Write};
use std::process::ExitCode;

/// Reads stdin to its end, then prints the batch's events.
pub fn main() -> ExitCode {
    let mut input = Vec::new();
    // A valid batch is at most its header and checksum (well under 1 KiB) more than the
    // largest body: reading stops one byte past that, which is then refused as too long.
    let most = (MAX_RAW_LEN + 1024) as u64;
    if let Err(e) = std::io::stdin()
        .lock()
        .take(most + 1)
        .read_to_end(&mut input)
    {
        eprintln!("ferry unpack: cannot read stdin: {e}");
        return ExitCode::FAILURE;
    }
    if input.len() as u64 > most {
        eprintln!("ferry unpack: malformed batch: input over {most} bytes");
        return ExitCode::FAILURE;
    }
    let batch = match unpack(&input) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("ferry unpack: malformed batch: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for ev in &batch.events {
        if let Err(e) = writeln!(out, "{}", jsonl::line(ev)) {
            eprintln!("ferry unpack: cannot write stdout: {e}");
            return ExitCode::FAILURE;
        }
    }
    if let Err(e) = out.flush() {
        eprintln!("ferry unpack: cannot write stdout: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
