//! The signaling messages, as JSON over a WebSocket. `media-node/README.md` documents them
//! with examples; this file is the source of truth.

use serde::{Deserialize, Serialize};

use crate::media::{Layer, ParticipantInfo};

/// Largest message a client may send, in bytes (an SDP with simulcast is a few kilobytes).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// What a client sends.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase", deny_unknown_fields)]
pub enum ClientMessage {
    /// First message: join the token's room.
    Join {
        /// Join token (JWT).
        token: String,
        /// Room the client wants; must match the token's.
        room: String,
    },
    /// Offer for the publish connection (initial, or after adding or removing tracks).
    PublishOffer {
        /// SDP.
        sdp: String,
    },
    /// Answer to the node's last subscribe offer.
    SubscribeAnswer {
        /// SDP.
        sdp: String,
    },
    /// Simulcast layer wanted for a received track (`null`: let the node choose).
    SetLayer {
        /// Track id from `trackPublished`.
        track: String,
        /// `low`, `medium`, `high` or null.
        layer: Option<Layer>,
    },
    /// Keep-alive; answered with `pong`.
    Ping {},
    /// Leave the room.
    Leave {},
}

/// What the node sends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum ServerMessage {
    /// The join succeeded.
    #[serde(rename_all = "camelCase")]
    Joined {
        /// Your participant id.
        participant_id: String,
        /// Room.
        room: String,
        /// Who is already there.
        participants: Vec<ParticipantInfo>,
        /// Whether you may publish and subscribe.
        can_publish: bool,
        /// Whether you receive the others' media.
        can_subscribe: bool,
    },
    /// Answer for the publish connection.
    PublishAnswer {
        /// SDP.
        sdp: String,
    },
    /// Offer for the subscribe connection; reply with `subscribeAnswer`.
    SubscribeOffer {
        /// SDP.
        sdp: String,
    },
    /// Someone joined.
    ParticipantJoined {
        /// Who.
        participant: ParticipantInfo,
    },
    /// Someone left.
    #[serde(rename_all = "camelCase")]
    ParticipantLeft {
        /// Their participant id.
        participant_id: String,
    },
    /// A track of another participant is in your subscribe connection.
    #[serde(rename_all = "camelCase")]
    TrackPublished {
        /// Publisher (also the media stream id in the SDP).
        participant_id: String,
        /// Track id in the SDP.
        track: String,
        /// `audio` or `video`.
        kind: String,
        /// Simulcast layers available.
        layers: Vec<Layer>,
    },
    /// Reconnect to `endpoint` with `token`: the room moved to another node.
    Migrate {
        /// New signaling endpoint.
        endpoint: String,
        /// Token for it.
        token: String,
    },
    /// Answer to `ping`.
    Pong,
    /// Something went wrong; `fatal` errors close the session.
    Error {
        /// Machine-readable code.
        code: String,
        /// What went wrong, for people.
        message: String,
        /// Whether the session is over.
        fatal: bool,
    },
}

/// How the node ends a session: the code and reason of the WebSocket close frame it sends
/// last, after an `error` message (`fatal: true`) that says the same in words, so that an app
/// tells a decision of the node from a network failure (1006, no close frame).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseCode {
    /// 1000: the client left (`leave`).
    Left,
    /// 1001: the node is shutting down (or its media loop stopped).
    NodeStopping,
    /// 1011: the node failed to set the session up.
    InternalError,
    /// 4000: the client broke the protocol (no `join` in time, a first message that is not
    /// `join`, too many invalid messages).
    ProtocolError,
    /// 4001: the join was refused (its token, or the node's admission).
    JoinRefused,
    /// 4002: the room closed on this node (closed, or no longer assigned here).
    RoomClosed,
    /// 4003: the participant's media connection failed or closed.
    MediaFailed,
    /// 4004: nothing came from the client (no frame, no pong) within [`IDLE_TIMEOUT`].
    IdleTimeout,
}

impl CloseCode {
    /// The close frame's code.
    pub fn code(self) -> u16 {
        match self {
            Self::Left => 1000,
            Self::NodeStopping => 1001,
            Self::InternalError => 1011,
            Self::ProtocolError => 4000,
            Self::JoinRefused => 4001,
            Self::RoomClosed => 4002,
            Self::MediaFailed => 4003,
            Self::IdleTimeout => 4004,
        }
    }

    /// The close frame's reason (short: a close frame carries at most 123 bytes).
    pub fn reason(self) -> &'static str {
        match self {
            Self::Left => "left",
            Self::NodeStopping => "node stopping",
            Self::InternalError => "media error",
            Self::ProtocolError => "protocol error",
            Self::JoinRefused => "join refused",
            Self::RoomClosed => "room closed",
            Self::MediaFailed => "media failed",
            Self::IdleTimeout => "idle timeout",
        }
    }
}

/// How often the node pings an idle session (WebSocket ping frames: browsers answer them on
/// their own).
pub const KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(15);

/// A session from which nothing (no frame, no pong) came for this long is closed with
/// [`CloseCode::IdleTimeout`].
pub const IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(45);

/// A client message that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// Over [`MAX_MESSAGE_BYTES`].
    #[error("message of {0} bytes is over the {MAX_MESSAGE_BYTES}-byte limit")]
    TooLarge(usize),
    /// Binary frames are not part of the protocol.
    #[error("binary messages are not accepted: send JSON text")]
    Binary,
    /// Not valid JSON, or not a known message.
    #[error("invalid message: {0}")]
    Invalid(String),
}

impl ProtocolError {
    /// Machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooLarge(_) => "message_too_large",
            Self::Binary => "binary_message",
            Self::Invalid(_) => "invalid_message",
        }
    }
}

/// Parses one text frame.
pub fn parse(text: &str) -> Result<ClientMessage, ProtocolError> {
    if text.len() > MAX_MESSAGE_BYTES {
        return Err(ProtocolError::TooLarge(text.len()));
    }
    serde_json::from_str(text).map_err(|e| ProtocolError::Invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_client_message() {
        assert_eq!(
            parse(r#"{"type":"join","token":"t","room":"r"}"#),
            Ok(ClientMessage::Join {
                token: "t".into(),
                room: "r".into()
            })
        );
        assert_eq!(
            parse(r#"{"type":"publishOffer","sdp":"v=0"}"#),
            Ok(ClientMessage::PublishOffer { sdp: "v=0".into() })
        );
        assert_eq!(
            parse(r#"{"type":"setLayer","track":"t1","layer":"low"}"#),
            Ok(ClientMessage::SetLayer {
                track: "t1".into(),
                layer: Some(Layer::Low)
            })
        );
        assert_eq!(
            parse(r#"{"type":"setLayer","track":"t1","layer":null}"#),
            Ok(ClientMessage::SetLayer {
                track: "t1".into(),
                layer: None
            })
        );
        assert_eq!(parse(r#"{"type":"ping"}"#), Ok(ClientMessage::Ping {}));
        assert_eq!(parse(r#"{"type":"leave"}"#), Ok(ClientMessage::Leave {}));
    }

    #[test]
    fn refuses_bad_messages_with_a_reason() {
        assert!(matches!(parse("{"), Err(ProtocolError::Invalid(_))));
        assert!(
            matches!(parse(r#"{"type":"explode"}"#), Err(ProtocolError::Invalid(m)) if m.contains("unknown variant"))
        );
        assert!(
            matches!(parse(r#"{"type":"join","token":"t"}"#), Err(ProtocolError::Invalid(m)) if m.contains("room"))
        );
        assert!(matches!(
            parse(r#"{"type":"ping","extra":1}"#),
            Err(ProtocolError::Invalid(_))
        ));
        let huge = format!(
            r#"{{"type":"publishOffer","sdp":"{}"}}"#,
            "a".repeat(MAX_MESSAGE_BYTES)
        );
        assert!(matches!(parse(&huge), Err(ProtocolError::TooLarge(_))));
    }

    #[test]
    fn close_codes_are_distinct_and_reasons_fit_a_close_frame() {
        let all = [
            CloseCode::Left,
            CloseCode::NodeStopping,
            CloseCode::InternalError,
            CloseCode::ProtocolError,
            CloseCode::JoinRefused,
            CloseCode::RoomClosed,
            CloseCode::MediaFailed,
            CloseCode::IdleTimeout,
        ];
        let codes: std::collections::HashSet<u16> = all.iter().map(|c| c.code()).collect();
        assert_eq!(codes.len(), all.len());
        assert!(all.iter().all(|c| c.reason().len() <= 123));
    }

    #[test]
    fn server_messages_are_tagged_camel_case() {
        let m = ServerMessage::ParticipantLeft {
            participant_id: "p1".into(),
        };
        assert_eq!(
            serde_json::to_string(&m).unwrap_or_default(),
            r#"{"type":"participantLeft","participantId":"p1"}"#
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics(text in ".{0,400}") {
            let _ = parse(&text);
        }
    }
}
