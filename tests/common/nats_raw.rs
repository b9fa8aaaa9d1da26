//! A blocking NATS client at the protocol-line level, for tests that assert ferry's exact
//! words (`-ERR '...'`, INFO fields) where a client library would hide them.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

pub struct NatsRaw {
    stream: TcpStream,
    buf: Vec<u8>,
    /// The INFO line the server sent first (JSON after `INFO `).
    pub info: String,
}

impl NatsRaw {
    /// Connects and reads INFO.
    pub fn open(addr: SocketAddr) -> NatsRaw {
        let stream = TcpStream::connect(addr).expect("connect to ferry (NATS)");
        stream.set_nodelay(true).unwrap();
        let mut c = NatsRaw {
            stream,
            buf: Vec::new(),
            info: String::new(),
        };
        let line = c.line(Duration::from_secs(10)).expect("INFO");
        assert!(line.starts_with("INFO "), "{line}");
        c.info = line[5..].to_string();
        c
    }

    /// Opens, sends CONNECT with `json` and a PING, and returns the lines up to PONG or
    /// the close (the PONG itself included).
    pub fn connect(addr: SocketAddr, json: &str) -> (NatsRaw, Vec<String>) {
        let mut c = NatsRaw::open(addr);
        c.send(&format!("CONNECT {json}\r\nPING\r\n"));
        let lines = c.until_pong(Duration::from_secs(10));
        (c, lines)
    }

    pub fn send(&mut self, text: &str) {
        let _ = self.stream.write_all(text.as_bytes());
    }

    /// The next line (without CRLF); None when the connection closed or `limit` passed.
    pub fn line(&mut self, limit: Duration) -> Option<String> {
        let end = Instant::now() + limit;
        loop {
            if let Some(at) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..at]).into_owned();
                self.buf.drain(..at + 2);
                return Some(line);
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.stream.set_read_timeout(Some(left)).unwrap();
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Reads `n` payload bytes plus CRLF after a MSG line.
    pub fn payload(&mut self, n: usize) -> Vec<u8> {
        let end = Instant::now() + Duration::from_secs(10);
        while self.buf.len() < n + 2 {
            assert!(Instant::now() < end, "payload did not arrive");
            self.stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => panic!("closed before the payload"),
                Ok(k) => self.buf.extend_from_slice(&chunk[..k]),
            }
        }
        let p = self.buf[..n].to_vec();
        self.buf.drain(..n + 2);
        p
    }

    /// Lines up to and including PONG, or up to the close.
    pub fn until_pong(&mut self, limit: Duration) -> Vec<String> {
        let mut lines = Vec::new();
        while let Some(l) = self.line(limit) {
            let done = l == "PONG";
            lines.push(l);
            if done {
                break;
            }
        }
        lines
    }

    /// True when the server closed the connection within `limit`.
    pub fn closed_within(&mut self, limit: Duration) -> bool {
        let end = Instant::now() + limit;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            self.stream.set_read_timeout(Some(left)).unwrap();
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return true,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return false;
                }
                Err(_) => return true,
            }
        }
    }
}
