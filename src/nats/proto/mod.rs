//! The NATS client protocol as nats-server speaks it, without any I/O:
//! parsing what clients send, encoding what the server sends, subject and
//! header rules, and the exact `-ERR` texts. The connection task owns the
//! socket and feeds bytes in / writes bytes out.

pub mod connect;
pub mod encode;
pub mod errors;
pub mod headers;
pub mod parser;
pub mod subject;

pub use connect::ConnectOptions;
pub use encode::{
    OK, PING, PONG, ServerInfo, encode_err, encode_hmsg, encode_info, encode_msg, hmsg_len, msg_len,
};
pub use errors::ProtoError;
pub use headers::{Headers, encode_no_responders_block, entry_encodable, no_responders_block};
pub use parser::{ClientOp, Limits, Parser};
pub use subject::{subject_matches, valid_publish_subject, valid_subscribe_subject};
