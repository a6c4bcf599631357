//! Recognising the first packet of a keyframe in VP8 and H264 payloads, so a subscriber is
//! switched to a stream (or a simulcast layer) only where it can start decoding.

use super::codecs::VideoCodec;

/// Whether this RTP payload starts a keyframe. Malformed payloads are not keyframes.
pub fn starts_keyframe(codec: VideoCodec, payload: &[u8]) -> bool {
    match codec {
        VideoCodec::Vp8 => vp8(payload),
        VideoCodec::H264 => h264(payload),
    }
}

/// RFC 7741: payload descriptor, then (at the start of a partition) the VP8 frame header whose
/// first bit is 0 for a key frame.
fn vp8(p: &[u8]) -> bool {
    let Some(&first) = p.first() else {
        return false;
    };
    let extended = first & 0x80 != 0;
    let start_of_partition = first & 0x10 != 0;
    let partition_id = first & 0x07;
    if !start_of_partition || partition_id != 0 {
        return false;
    }
    let mut i = 1;
    if extended {
        let Some(&x) = p.get(i) else { return false };
        i += 1;
        if x & 0x80 != 0 {
            // PictureID: one or two bytes.
            let Some(&pid) = p.get(i) else { return false };
            i += if pid & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            i += 1; // TL0PICIDX
        }
        if x & 0x30 != 0 {
            i += 1; // TID/KEYIDX
        }
    }
    p.get(i).is_some_and(|b| b & 0x01 == 0)
}

/// RFC 6184: an IDR slice (type 5) or an SPS (type 7, which precedes IDRs), possibly inside a
/// STAP-A aggregate or at the start of a FU-A fragment.
fn h264(p: &[u8]) -> bool {
    let Some(&header) = p.first() else {
        return false;
    };
    match header & 0x1F {
        5 | 7 => true,
        24 => {
            // STAP-A: 16-bit size, then a NAL unit, repeated.
            let mut i = 1;
            while i + 2 < p.len() {
                let size = usize::from(u16::from_be_bytes([p[i], p[i + 1]]));
                if let Some(&nal) = p.get(i + 2)
                    && matches!(nal & 0x1F, 5 | 7)
                {
                    return true;
                }
                i += 2 + size;
            }
            false
        }
        28 => p
            .get(1)
            .is_some_and(|fu| fu & 0x80 != 0 && matches!(fu & 0x1F, 5 | 7)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vp8_keyframes_and_delta_frames() {
        // S=1, PID=0, no extension; frame header bit 0 = 0: key frame.
        assert!(starts_keyframe(
            VideoCodec::Vp8,
            &[0x10, 0x00, 0x9d, 0x01, 0x2a]
        ));
        assert!(!starts_keyframe(VideoCodec::Vp8, &[0x10, 0x01]));
        // Continuation of a partition is never a keyframe start.
        assert!(!starts_keyframe(VideoCodec::Vp8, &[0x00, 0x00]));
        // Extended descriptor with a 15-bit picture id.
        assert!(starts_keyframe(
            VideoCodec::Vp8,
            &[0x90, 0x80, 0x81, 0x23, 0x00]
        ));
        assert!(!starts_keyframe(VideoCodec::Vp8, &[0x90, 0x80, 0x81]));
        assert!(!starts_keyframe(VideoCodec::Vp8, &[]));
    }

    #[test]
    fn h264_idr_sps_stap_and_fu() {
        assert!(starts_keyframe(VideoCodec::H264, &[0x65, 0x88]));
        assert!(starts_keyframe(VideoCodec::H264, &[0x67, 0x42]));
        assert!(!starts_keyframe(VideoCodec::H264, &[0x41, 0x9a]));
        assert!(starts_keyframe(
            VideoCodec::H264,
            &[0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x01, 0x68]
        ));
        assert!(starts_keyframe(VideoCodec::H264, &[0x7c, 0x85, 0x00]));
        assert!(!starts_keyframe(VideoCodec::H264, &[0x7c, 0x05, 0x00]));
        assert!(!starts_keyframe(VideoCodec::H264, &[0x78, 0xff]));
    }
}
