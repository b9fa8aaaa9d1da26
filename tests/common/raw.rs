//! A blocking MQTT 3.1.1 client at the packet level, using rumqttc's own packet codec
//! (`rumqttc::Packet`), for tests that must control exactly which packets are sent and
//! see exactly which come back (DUP flags, session present, return codes, raw bytes).

use bytes::BytesMut;
use rumqttc::{Connect, Packet, Publish, QoS, Subscribe};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

pub struct Raw {
    stream: TcpStream,
    buf: BytesMut,
}

#[derive(Debug, PartialEq)]
pub enum End {
    Closed,
    Timeout,
}

impl Raw {
    pub fn open(addr: SocketAddr) -> Raw {
        Raw::try_open(addr).expect("connect to ferry")
    }

    /// Connects, or None when nothing listens (a test restarting ferry).
    pub fn try_open(addr: SocketAddr) -> Option<Raw> {
        let stream = TcpStream::connect(addr).ok()?;
        stream.set_nodelay(true).ok()?;
        Some(Raw {
            stream,
            buf: BytesMut::new(),
        })
    }

    /// Wraps a connected socket (one set up by the test, e.g. with a small receive buffer).
    pub fn from_stream(stream: TcpStream) -> Raw {
        stream.set_nodelay(true).expect("TCP_NODELAY");
        Raw {
            stream,
            buf: BytesMut::new(),
        }
    }

    /// Reads and discards everything until the server closes the connection; false if it
    /// is still open after `limit`. For a client that stopped reading: what the server
    /// wrote before it closed need not end on a packet boundary.
    pub fn drain_until_closed(&mut self, limit: Duration) -> bool {
        let end = Instant::now() + limit;
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            self.stream.set_read_timeout(Some(left)).unwrap();
            match self.stream.read(&mut chunk) {
                Ok(0) => return true,
                Ok(_) => {}
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

    /// Opens a connection and completes CONNECT/CONNACK; returns the CONNACK.
    pub fn connect(
        addr: SocketAddr,
        id: &str,
        clean: bool,
        keep_alive: u16,
    ) -> (Raw, rumqttc::ConnAck) {
        let mut raw = Raw::open(addr);
        let mut c = Connect::new(id);
        c.clean_session = clean;
        c.keep_alive = keep_alive;
        raw.send(Packet::Connect(c));
        match raw.recv(Duration::from_secs(10)) {
            Ok(Packet::ConnAck(a)) => (raw, a),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// CONNECT with a user name and password; returns the CONNACK (or how it ended).
    pub fn connect_login(
        addr: SocketAddr,
        id: &str,
        clean: bool,
        login: Option<(&str, &str)>,
    ) -> (Raw, Result<rumqttc::ConnAck, End>) {
        let mut raw = Raw::open(addr);
        let mut c = Connect::new(id);
        c.clean_session = clean;
        c.keep_alive = 30;
        if let Some((u, p)) = login {
            c.set_login(u, p);
        }
        raw.send(Packet::Connect(c));
        let ack = match raw.recv(Duration::from_secs(10)) {
            Ok(Packet::ConnAck(a)) => Ok(a),
            Ok(other) => panic!("expected CONNACK, got {other:?}"),
            Err(e) => Err(e),
        };
        (raw, ack)
    }

    pub fn send(&mut self, p: Packet) {
        let mut out = BytesMut::new();
        p.write(&mut out, 1 << 20).unwrap();
        self.send_bytes(&out);
    }

    pub fn send_bytes(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes);
    }

    pub fn subscribe(
        &mut self,
        pkid: u16,
        filter: &str,
        qos: QoS,
    ) -> Vec<rumqttc::SubscribeReasonCode> {
        let mut s = Subscribe::new(filter, qos);
        s.pkid = pkid;
        self.send(Packet::Subscribe(s));
        match self.recv(Duration::from_secs(10)) {
            Ok(Packet::SubAck(a)) => {
                assert_eq!(a.pkid, pkid);
                a.return_codes
            }
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    pub fn publish(&mut self, topic: &str, qos: QoS, pkid: u16, retain: bool, payload: &[u8]) {
        let mut p = Publish::new(topic, qos, payload.to_vec());
        p.pkid = pkid;
        p.retain = retain;
        self.send(Packet::Publish(p));
    }

    /// The next packet, or how the wait ended.
    pub fn recv(&mut self, limit: Duration) -> Result<Packet, End> {
        let end = Instant::now() + limit;
        loop {
            if !self.buf.is_empty() {
                if let Ok(p) = Packet::read(&mut self.buf, 1 << 24) {
                    return Ok(p);
                }
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(End::Timeout);
            }
            self.stream.set_read_timeout(Some(left)).unwrap();
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(End::Closed),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(End::Timeout);
                }
                Err(_) => return Err(End::Closed),
            }
        }
    }

    /// The next PUBLISH, skipping nothing: any other packet is a test failure.
    pub fn next_publish(&mut self, limit: Duration) -> Publish {
        match self.recv(limit) {
            Ok(Packet::Publish(p)) => p,
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    /// Waits for the server to close the connection.
    pub fn expect_closed(&mut self, limit: Duration) {
        loop {
            match self.recv(limit) {
                Err(End::Closed) => return,
                Err(End::Timeout) => panic!("connection still open after {limit:?}"),
                Ok(_) => {}
            }
        }
    }

    /// Drops the TCP connection without DISCONNECT.
    pub fn kill(self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}
