//! The codecs the node negotiates: Opus, VP8 and H264 (with RTX), and nothing else, so every
//! track it accepts is one it knows how to forward and find keyframes in.

use rtc::peer_connection::configuration::media_engine::{
    MIME_TYPE_H264, MIME_TYPE_OPUS, MIME_TYPE_RTX, MIME_TYPE_VP8, MediaEngine,
};
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RtpCodecKind,
};
use rtc::shared::error::Result;

/// Video codecs the node forwards, by the payload format a keyframe is recognised in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VideoCodec {
    /// VP8 (RFC 7741).
    Vp8,
    /// H.264 (RFC 6184).
    H264,
}

impl VideoCodec {
    /// The codec for a MIME type, if it is a video codec the node knows.
    pub fn from_mime(mime: &str) -> Option<Self> {
        if mime.eq_ignore_ascii_case(MIME_TYPE_VP8) {
            Some(Self::Vp8)
        } else if mime.eq_ignore_ascii_case(MIME_TYPE_H264) {
            Some(Self::H264)
        } else {
            None
        }
    }
}

fn video_feedback() -> Vec<RTCPFeedback> {
    ["goog-remb", "ccm fir", "nack", "nack pli", "transport-cc"]
        .iter()
        .map(|f| {
            let (typ, parameter) = f.split_once(' ').unwrap_or((f, ""));
            RTCPFeedback {
                typ: typ.to_owned(),
                parameter: parameter.to_owned(),
            }
        })
        .collect()
}

fn codec(
    mime: &str,
    clock_rate: u32,
    channels: u16,
    fmtp: &str,
    feedback: Vec<RTCPFeedback>,
    payload_type: u8,
) -> RTCRtpCodecParameters {
    RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: mime.to_owned(),
            clock_rate,
            channels,
            sdp_fmtp_line: fmtp.to_owned(),
            rtcp_feedback: feedback,
        },
        payload_type,
    }
}

/// A media engine with the node's codecs registered.
pub fn media_engine() -> Result<MediaEngine> {
    let mut engine = MediaEngine::default();
    engine.register_codec(
        codec(
            MIME_TYPE_OPUS,
            48_000,
            2,
            "minptime=10;useinbandfec=1",
            vec![],
            111,
        ),
        RtpCodecKind::Audio,
    )?;
    let video = [
        (MIME_TYPE_VP8, "", 96, 97),
        (
            MIME_TYPE_H264,
            "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
            102,
            103,
        ),
        (
            MIME_TYPE_H264,
            "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f",
            127,
            121,
        ),
    ];
    for (mime, fmtp, pt, rtx_pt) in video {
        engine.register_codec(
            codec(mime, 90_000, 0, fmtp, video_feedback(), pt),
            RtpCodecKind::Video,
        )?;
        engine.register_codec(
            codec(
                MIME_TYPE_RTX,
                90_000,
                0,
                &format!("apt={pt}"),
                vec![],
                rtx_pt,
            ),
            RtpCodecKind::Video,
        )?;
    }
    Ok(engine)
}
