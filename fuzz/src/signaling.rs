//! A signaling session's text frames, as a client (or anyone who reached the port) sends them.

use ruche_media_node::signaling::protocol::{MAX_MESSAGE_BYTES, ProtocolError, parse};

/// Parses `data` as one text frame: a message or a named refusal, never a panic.
pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        // Not text: the session refuses binary frames before parsing.
        return;
    };
    match parse(text) {
        Ok(_) => assert!(text.len() <= MAX_MESSAGE_BYTES, "an oversized frame parsed"),
        Err(ProtocolError::TooLarge(len)) => assert!(len > MAX_MESSAGE_BYTES),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}
