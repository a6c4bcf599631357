//! VP8 picture numbering continuous across simulcast layer switches.
//!
//! Each layer of a VP8 simulcast publisher is its own encoder, with its own picture ids,
//! TL0PICIDX and KEYIDX in the payload descriptor (RFC 7741 §4.2). A receiver orders frames by
//! picture id: after a switch, the new layer's ids may lie "behind" the last one it decoded (in
//! 15-bit wrapped order), and it discards the new frames as stale, keyframe included, and
//! freezes on the last picture of the old layer. So, like the sequence numbers and timestamps
//! (see [`rewrite`](super::rewrite)), the ids each subscriber sees continue from the last one
//! it got.
//!
//! The descriptor keeps its size: a 7-bit picture id stays 7-bit. Until a subscriber's first
//! switch the offsets are zero and the payload is forwarded as it is, without a copy.

use bytes::{Bytes, BytesMut};

/// Where the numbered fields of a VP8 payload descriptor are, and their values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Descriptor {
    /// Picture id, its offset in the payload, and whether it is 15-bit (else 7-bit).
    pub picture_id: Option<(u16, usize, bool)>,
    /// TL0PICIDX and its offset.
    pub tl0_pic_idx: Option<(u8, usize)>,
    /// KEYIDX and the offset of its byte.
    pub key_idx: Option<(u8, usize)>,
}

/// Reads the descriptor at the start of a VP8 payload; `None` if it is truncated.
pub fn descriptor(payload: &[u8]) -> Option<Descriptor> {
    let first = *payload.first()?;
    let mut d = Descriptor::default();
    if first & 0x80 == 0 {
        return Some(d);
    }
    let ext = *payload.get(1)?;
    let mut at = 2;
    if ext & 0x80 != 0 {
        let b = *payload.get(at)?;
        if b & 0x80 != 0 {
            let low = *payload.get(at + 1)?;
            d.picture_id = Some((u16::from_be_bytes([b & 0x7f, low]), at, true));
            at += 2;
        } else {
            d.picture_id = Some((u16::from(b), at, false));
            at += 1;
        }
    }
    if ext & 0x40 != 0 {
        d.tl0_pic_idx = Some((*payload.get(at)?, at));
        at += 1;
    }
    if ext & 0x30 != 0 {
        let b = *payload.get(at)?;
        if ext & 0x10 != 0 {
            d.key_idx = Some((b & 0x1f, at));
        }
    }
    Some(d)
}

/// Per-subscription renumbering of one VP8 track.
#[derive(Clone, Debug, Default)]
pub struct Renumber {
    source: Option<u32>,
    picture_offset: u16,
    tl0_offset: u8,
    key_offset: u8,
    /// The last numbers sent: picture id, TL0PICIDX, KEYIDX.
    last: (Option<u16>, Option<u8>, Option<u8>),
}

const PICTURE_ID_MASK_15: u16 = 0x7fff;
const PICTURE_ID_MASK_7: u16 = 0x7f;

impl Renumber {
    /// The payload to forward for a packet of source `ssrc` (a new source continues the
    /// numbering right after the last one sent). `None`: forward `payload` unchanged.
    pub fn rewrite(&mut self, ssrc: u32, payload: &Bytes) -> Option<Bytes> {
        let d = descriptor(payload)?;
        if self.source != Some(ssrc) {
            let first_source = self.source.is_none();
            self.source = Some(ssrc);
            if !first_source {
                if let (Some((pid, _, _)), Some(last)) = (d.picture_id, self.last.0) {
                    self.picture_offset = last.wrapping_add(1).wrapping_sub(pid);
                }
                if let (Some((tl0, _)), Some(last)) = (d.tl0_pic_idx, self.last.1) {
                    self.tl0_offset = last.wrapping_add(1).wrapping_sub(tl0);
                }
                if let (Some((key, _)), Some(last)) = (d.key_idx, self.last.2) {
                    self.key_offset = last.wrapping_add(1).wrapping_sub(key) & 0x1f;
                }
            }
        }
        let picture = d.picture_id.map(|(pid, at, long)| {
            let mask = if long {
                PICTURE_ID_MASK_15
            } else {
                PICTURE_ID_MASK_7
            };
            (pid.wrapping_add(self.picture_offset) & mask, at, long)
        });
        let tl0 = d
            .tl0_pic_idx
            .map(|(v, at)| (v.wrapping_add(self.tl0_offset), at));
        let key = d
            .key_idx
            .map(|(v, at)| (v.wrapping_add(self.key_offset) & 0x1f, at));
        self.last = (
            picture.map(|(p, _, _)| p).or(self.last.0),
            tl0.map(|(t, _)| t).or(self.last.1),
            key.map(|(k, _)| k).or(self.last.2),
        );
        if self.picture_offset == 0 && self.tl0_offset == 0 && self.key_offset == 0 {
            return None;
        }
        let mut out = BytesMut::from(&payload[..]);
        if let Some((p, at, long)) = picture {
            if long {
                let [hi, lo] = p.to_be_bytes();
                out[at] = 0x80 | hi;
                out[at + 1] = lo;
            } else {
                out[at] = (p & PICTURE_ID_MASK_7) as u8;
            }
        }
        if let Some((t, at)) = tl0 {
            out[at] = t;
        }
        if let Some((k, at)) = key {
            out[at] = (out[at] & 0xe0) | k;
        }
        Some(out.freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A VP8 payload with a 15-bit picture id, a TL0PICIDX and a KEYIDX.
    fn payload(pid: u16, tl0: u8, key: u8) -> Bytes {
        let [hi, lo] = pid.to_be_bytes();
        Bytes::from(vec![
            0x90,
            0xf0,
            0x80 | hi,
            lo,
            tl0,
            0x20 | key,
            0x9d,
            0x01,
            0x2a,
        ])
    }

    #[test]
    fn reads_the_descriptor_fields_and_refuses_truncation() {
        let d = descriptor(&payload(0x1234, 7, 3)).unwrap_or_default();
        assert_eq!(d.picture_id, Some((0x1234, 2, true)));
        assert_eq!(d.tl0_pic_idx, Some((7, 4)));
        assert_eq!(d.key_idx, Some((3, 5)));
        // Short picture id, nothing else.
        let d = descriptor(&[0x80, 0x80, 0x05, 0xaa]).unwrap_or_default();
        assert_eq!(d.picture_id, Some((5, 2, false)));
        assert_eq!(descriptor(&[0x90, 0xf0, 0x80]), None);
        assert_eq!(descriptor(&[]), None);
        assert_eq!(descriptor(&[0x10, 0x9d]), Some(Descriptor::default()));
    }

    #[test]
    fn the_first_source_passes_unchanged_and_a_switch_continues_the_numbering() {
        let mut r = Renumber::default();
        assert_eq!(r.rewrite(1, &payload(100, 10, 1)), None);
        assert_eq!(r.rewrite(1, &payload(101, 11, 1)), None);
        // A switch to a layer whose ids are far "behind".
        let out = r.rewrite(2, &payload(30_000, 200, 9)).unwrap_or_default();
        assert_eq!(
            descriptor(&out).unwrap_or_default().picture_id,
            Some((102, 2, true))
        );
        assert_eq!(
            descriptor(&out).unwrap_or_default().tl0_pic_idx,
            Some((12, 4))
        );
        assert_eq!(descriptor(&out).unwrap_or_default().key_idx, Some((2, 5)));
        assert_eq!(
            &out[6..],
            &[0x9d, 0x01, 0x2a],
            "the payload after the descriptor is intact"
        );
        let out = r.rewrite(2, &payload(30_001, 201, 9)).unwrap_or_default();
        assert_eq!(
            descriptor(&out).unwrap_or_default().picture_id,
            Some((103, 2, true))
        );
        // 15-bit wrap.
        let out = r.rewrite(2, &payload(29_897, 201, 9));
        let pid = out.and_then(|o| descriptor(&o)).and_then(|d| d.picture_id);
        assert_eq!(pid.map(|p| p.0), Some(32_767));
    }

    proptest::proptest! {
        #[test]
        fn never_panics_and_keeps_the_size(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..40), ssrc in 1u32..4) {
            let mut r = Renumber::default();
            let _ = r.rewrite(9, &payload(5, 5, 5));
            let b = Bytes::from(bytes);
            if let Some(out) = r.rewrite(ssrc, &b) {
                proptest::prop_assert_eq!(out.len(), b.len());
            }
        }
    }
}
