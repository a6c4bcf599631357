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
