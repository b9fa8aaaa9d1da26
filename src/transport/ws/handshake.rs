//! The server side of the opening handshake (RFC 6455 §4.2): read the HTTP request head,
//! check it, and answer `101 Switching Protocols` or the HTTP status that says why not.

use super::{WsError, WsStream, base64, request, sha1::Sha1};
use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Appended to the client's key before hashing (RFC 6455 §1.3).
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// Bytes read at a time while looking for the end of the request head.
const READ_CHUNK: usize = 1024;

/// Reads the HTTP upgrade request from `stream` (at most `max_request` bytes of request
/// line and headers), checks it, answers 101 and returns the stream. On a bad request it
/// answers with the matching HTTP status (400, 404 for a wrong path, 405 for a method
/// other than GET, 426 with `Sec-WebSocket-Version: 13` for a wrong version, 431 for a
/// request head over `max_request`) and returns the error. Bytes the client sent after
/// the request (a first frame, pipelined) are kept for the stream's first read.
///
/// It waits as long as the client takes to send its request: the caller bounds it with
/// its own timeout.
pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    path: &str,
    max_request: usize,
) -> Result<WsStream<S>, WsError> {
    let checked = match read_head(&mut stream, max_request).await {
        Ok((head, rest)) => request::check(&head, path)
            .map(|upgrade| (response(upgrade.key, upgrade.protocol), rest)),
        Err(e) => Err(e),
    };
    match checked {
        Ok((response, rest)) => {
            stream.write_all(response.as_bytes()).await?;
            stream.flush().await?;
            Ok(WsStream::from_raw(stream, rest))
        }
        Err(e) => {
            refuse(&mut stream, &e).await;
            Err(e)
        }
    }
}

/// The request head up to and including its blank line, and whatever followed it.
async fn read_head<S: AsyncRead + Unpin>(
    stream: &mut S,
    max_request: usize,
) -> Result<(BytesMut, BytesMut), WsError> {
    let mut buf = BytesMut::new();
    let mut scanned = 0;
    loop {
        if let Some(i) = buf[scanned..].windows(4).position(|w| w == b"\r\n\r\n") {
            let end = scanned + i + 4;
            if end > max_request {
                return Err(WsError::RequestTooLarge(max_request));
            }
            // Copied out, so that the head's buffer is freed with the head.
            let rest = BytesMut::from(&buf[end..]);
            buf.truncate(end);
            return Ok((buf, rest));
        }
        if buf.len() >= max_request {
            return Err(WsError::RequestTooLarge(max_request));
        }
        // The blank line may straddle two reads: rescan the last 3 bytes.
        scanned = buf.len().saturating_sub(3);
        buf.reserve(READ_CHUNK.min(max_request - buf.len()));
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(WsError::Incomplete);
        }
    }
}

/// `Sec-WebSocket-Accept` for `key`: base64(SHA-1(key + GUID)).
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(GUID);
    base64::encode(&sha.finish())
}

fn response(key: &str, protocol: Option<&str>) -> String {
    let mut r = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n",
        accept_key(key)
    );
    if let Some(p) = protocol {
        r.push_str("Sec-WebSocket-Protocol: ");
        r.push_str(p);
        r.push_str("\r\n");
    }
    r.push_str("\r\n");
    r
}

/// The status line and extra headers to refuse a request with; `None` when there is no
/// one to answer (the connection ended, or failed).
fn refusal(e: &WsError) -> Option<(&'static str, &'static str)> {
    Some(match e {
        WsError::RequestTooLarge(_) => ("431 Request Header Fields Too Large", ""),
        WsError::Method(_) => ("405 Method Not Allowed", "Allow: GET\r\n"),
        WsError::Path(_) => ("404 Not Found", ""),
        // RFC 9110 §15.5.22 and §7.8: a 426 names the protocol to upgrade to, in an
        // Upgrade header that the Connection header then lists.
        WsError::Version(_) => (
            "426 Upgrade Required",
            "Sec-WebSocket-Version: 13\r\nUpgrade: websocket\r\nConnection: Upgrade, close\r\n",
        ),
        WsError::Malformed(_) | WsError::NotUpgrade(_) | WsError::Key | WsError::Subprotocol(_) => {
            ("400 Bad Request", "")
        }
        WsError::Incomplete | WsError::Protocol(_) | WsError::Io(_) => return None,
    })
}

/// Answers a refused request and ends the connection, best-effort: the request already
/// failed, so write errors change nothing.
async fn refuse<S: AsyncWrite + Unpin>(stream: &mut S, e: &WsError) {
    let Some((status, extra)) = refusal(e) else {
        return;
    };
    let connection = if extra.contains("Connection:") {
        ""
    } else {
        "Connection: close\r\n"
    };
    let response = format!("HTTP/1.1 {status}\r\n{extra}{connection}Content-Length: 0\r\n\r\n");
    if stream.write_all(response.as_bytes()).await.is_ok() {
        let _ = stream.flush().await;
        let _ = stream.shutdown().await;
    }
}

#[cfg(test)]
#[path = "handshake_tests.rs"]
mod tests;
