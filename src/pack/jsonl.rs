//! An unpacked event as one JSON line, the output of `ferry unpack` and of
//! tools/ferry_batch.py (the two must agree byte for byte; docs/batch-format.md).
//!
//! Keys in a fixed order; the payload as `payload` (a JSON string) when it is UTF-8,
//! otherwise as `payload_hex` (lowercase hex), as `ferry store dump` prints stored events,
//! so either gives back the exact bytes. Non-ASCII text is written as UTF-8, not escaped.

use super::UnpackedEvent;
use crate::store::inspect::{Obj, hex, quote};

/// `ev` as a JSON object on one line, without the newline.
pub fn line(ev: &UnpackedEvent) -> String {
    let props: Vec<String> = ev
        .user_properties
        .iter()
        .map(|(k, v)| format!("[{},{}]", quote(k), quote(v)))
        .collect();
    let o = Obj::default()
        .str("key", &ev.key)
        .num("seq", ev.seq)
        .str("topic", &ev.topic);
    let o = match std::str::from_utf8(&ev.payload) {
        Ok(text) => o.str("payload", text),
        Err(_) => o.str("payload_hex", &hex(&ev.payload)),
    };
    o.num("received_ms", ev.received_ms)
        .num("qos", u64::from(ev.qos))
        .raw("retain", if ev.retain { "true" } else { "false" })
        .raw("user_properties", &format!("[{}]", props.join(",")))
        .done()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn event(payload: &'static [u8]) -> UnpackedEvent {
        UnpackedEvent {
            key: "gw-7-12".into(),
            seq: 12,
            received_ms: 1_700_000_000_000,
            topic: "a/\"b\"/é".into(),
            payload: Bytes::from_static(payload),
            qos: 1,
            retain: true,
            user_properties: vec![("k".into(), "v\n".into())],
        }
    }

    #[test]
    fn text_and_binary_payloads() {
        assert_eq!(
            line(&event(b"{\"t\":1}\x01")),
            r#"{"key":"gw-7-12","seq":12,"topic":"a/\"b\"/é","payload":"{\"t\":1}\u0001","received_ms":1700000000000,"qos":1,"retain":true,"user_properties":[["k","v\n"]]}"#
        );
        let mut e = event(b"\xff\x00");
        e.user_properties.clear();
        e.retain = false;
        assert_eq!(
            line(&e),
            r#"{"key":"gw-7-12","seq":12,"topic":"a/\"b\"/é","payload_hex":"ff00","received_ms":1700000000000,"qos":1,"retain":false,"user_properties":[]}"#
        );
    }
}
