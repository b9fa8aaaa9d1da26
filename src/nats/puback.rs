//! The reply ferry sends to a NATS request once the event is durable, shaped like a
//! JetStream PubAck so JetStream-aware code can read it:
//! `{"stream":"ferry","seq":<store seq>}`, or on failure
//! `{"error":{"code":503,"description":"<why>"}}`.

use bytes::Bytes;

/// The stream name reported in every PubAck.
pub const STREAM: &str = "ferry";

/// JSON for a commit outcome: the store seq, or why the event was not stored.
pub fn json(outcome: &Result<u64, String>) -> Bytes {
    // Written by hand: serde_json's maps sort their keys, and JetStream puts
    // "stream" before "seq".
    let text = match outcome {
        Ok(seq) => format!(r#"{{"stream":"{STREAM}","seq":{seq}}}"#),
        Err(why) => {
            let why = serde_json::Value::String(why.clone());
            format!(r#"{{"error":{{"code":503,"description":{why}}}}}"#)
        }
    };
    Bytes::from(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_bytes() {
        assert_eq!(&json(&Ok(42))[..], br#"{"stream":"ferry","seq":42}"#);
        assert_eq!(
            &json(&Err("disk \"full\"".into()))[..],
            br#"{"error":{"code":503,"description":"disk \"full\""}}"#
        );
    }
}
