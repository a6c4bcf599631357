//! Rewriting a forwarded stream so each subscriber sees one continuous stream per track,
//! whatever simulcast layer it is fed from: its own SSRC, sequence numbers without gaps or
//! jumps at a layer switch, and timestamps that keep advancing.

/// Per-subscription sequence and timestamp mapping.
#[derive(Clone, Debug, Default)]
pub struct Rewriter {
    /// Offset added to the source's sequence numbers.
    seq_offset: u16,
    /// Offset added to the source's timestamps.
    ts_offset: u32,
    /// Last sequence number and timestamp sent.
    last: Option<(u16, u32)>,
    /// Source SSRC the offsets were computed for.
    source: Option<u32>,
}

impl Rewriter {
    /// Maps a source packet to the outgoing sequence number and timestamp. A new source SSRC
    /// (a layer switch, or a publisher restarting) continues right after the last packet sent.
    pub fn map(&mut self, ssrc: u32, seq: u16, ts: u32) -> (u16, u32) {
        if self.source != Some(ssrc) {
            self.source = Some(ssrc);
            // Continue right after the last packet sent; a first source passes unchanged.
            // One 90 kHz frame interval past the last timestamp keeps timestamps increasing.
            (self.seq_offset, self.ts_offset) = self.last.map_or((0, 0), |(last_seq, last_ts)| {
                (
                    last_seq.wrapping_add(1).wrapping_sub(seq),
                    last_ts.wrapping_add(3000).wrapping_sub(ts),
                )
            });
        }
        let out = (
            seq.wrapping_add(self.seq_offset),
            ts.wrapping_add(self.ts_offset),
        );
        // Keep the highest sequence number sent (retransmissions and reordering go backwards).
        match self.last {
            Some((last_seq, _)) if out.0.wrapping_sub(last_seq) > 0x8000 => {}
            _ => self.last = Some(out),
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_source_passes_through() {
        let mut r = Rewriter::default();
        assert_eq!(r.map(1, 100, 9000), (100, 9000));
        assert_eq!(r.map(1, 101, 12000), (101, 12000));
    }

    #[test]
    fn a_layer_switch_continues_the_sequence() {
        let mut r = Rewriter::default();
        r.map(1, 100, 9000);
        r.map(1, 101, 12000);
        let (seq, ts) = r.map(2, 5000, 777);
        assert_eq!(seq, 102);
        assert_eq!(ts, 15000);
        assert_eq!(r.map(2, 5001, 3777), (103, 18000));
    }

    #[test]
    fn wraps_around_and_ignores_late_packets_for_the_high_mark() {
        let mut r = Rewriter::default();
        r.map(1, 65535, 0);
        assert_eq!(r.map(1, 0, 3000).0, 0);
        assert_eq!(r.map(1, 65534, 0).0, 65534);
        // A switch after a late packet still continues from the highest sent.
        assert_eq!(r.map(2, 10, 0).0, 1);
    }
}
