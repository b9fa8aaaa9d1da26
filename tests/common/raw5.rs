//! A blocking MQTT 5 client at the packet level, using rumqttc's MQTT 5 packet codec.

use bytes::BytesMut;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{
    ConnAck, Connect, ConnectProperties, Filter, LastWill, Packet, PubAck, Publish,
    PublishProperties, RetainForwardRule, Subscribe, SubscribeProperties, SubscribeReasonCode,
};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

pub struct Raw5 {
    stream: TcpStream,
    buf: BytesMut,
}

impl Raw5 {
    pub fn open(addr: SocketAddr) -> Raw5 {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_nodelay(true).unwrap();
        Raw5 {
            stream,
            buf: BytesMut::new(),
        }
    }

    /// CONNECT with `props` (and an optional will); returns the CONNACK.
    pub fn connect(
        addr: SocketAddr,
        id: &str,
        clean: bool,
        props: ConnectProperties,
        will: Option<LastWill>,
    ) -> (Raw5, ConnAck) {
        let mut raw = Raw5::open(addr);
        let c = Connect {
            keep_alive: 30,
            client_id: id.into(),
            clean_start: clean,
            properties: Some(props),
        };
        raw.send(Packet::Connect(c, will, None));
        match raw.recv(Duration::from_secs(10)) {
            Some(Packet::ConnAck(a)) => (raw, a),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// CONNECT (clean) with a user name and password; returns the CONNACK.
    pub fn connect_login(
        addr: SocketAddr,
        id: &str,
        clean: bool,
        login: Option<(&str, &str)>,
    ) -> (Raw5, ConnAck) {
        let mut raw = Raw5::open(addr);
        let c = Connect {
            keep_alive: 30,
            client_id: id.into(),
            clean_start: clean,
            properties: Some(ConnectProperties::new()),
        };
        let login = login.map(|(u, p)| rumqttc::v5::mqttbytes::v5::Login::new(u, p));
        raw.send(Packet::Connect(c, None, login));
        match raw.recv(Duration::from_secs(10)) {
            Some(Packet::ConnAck(a)) => (raw, a),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    pub fn simple(addr: SocketAddr, id: &str) -> Raw5 {
        Raw5::connect(addr, id, true, ConnectProperties::new(), None).0
    }

    pub fn send(&mut self, p: Packet) {
        let mut out = BytesMut::new();
        p.write(&mut out, None).unwrap();
        let _ = self.stream.write_all(&out);
    }

    pub fn subscribe_with(
        &mut self,
        pkid: u16,
        filters: Vec<Filter>,
        id: Option<usize>,
    ) -> Vec<SubscribeReasonCode> {
        let properties = id.map(|id| SubscribeProperties {
            id: Some(id),
            user_properties: vec![],
        });
        self.send(Packet::Subscribe(Subscribe {
            pkid,
            filters,
            properties,
        }));
        match self.recv(Duration::from_secs(10)) {
            Some(Packet::SubAck(a)) => a.return_codes,
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    pub fn subscribe(&mut self, pkid: u16, filter: &str, qos: QoS) -> Vec<SubscribeReasonCode> {
        self.subscribe_with(pkid, vec![filter_of(filter, qos)], None)
    }

    pub fn publish(
        &mut self,
        topic: &str,
        qos: QoS,
        pkid: u16,
        payload: &[u8],
        props: Option<PublishProperties>,
    ) {
        let mut p = Publish::new(topic, qos, payload.to_vec(), props);
        p.pkid = pkid;
        self.send(Packet::Publish(p));
    }

    pub fn puback(&mut self, pkid: u16) {
        self.send(Packet::PubAck(PubAck::new(pkid, None)));
    }

    /// The next packet; None when the wait timed out or the connection closed.
    pub fn recv(&mut self, limit: Duration) -> Option<Packet> {
        let end = Instant::now() + limit;
        loop {
            if !self.buf.is_empty() {
                if let Ok(p) = Packet::read(&mut self.buf, None) {
                    return Some(p);
                }
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

    pub fn next_publish(&mut self, limit: Duration) -> Publish {
        match self.recv(limit) {
            Some(Packet::Publish(p)) => p,
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    pub fn kill(self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

pub fn filter_of(path: &str, qos: QoS) -> Filter {
    Filter {
        path: path.into(),
        qos,
        nolocal: false,
        preserve_retain: false,
        retain_forward_rule: RetainForwardRule::OnEverySubscribe,
    }
}

/// A publish's topic as text.
pub fn topic_of(p: &Publish) -> String {
    String::from_utf8_lossy(&p.topic).into_owned()
}
