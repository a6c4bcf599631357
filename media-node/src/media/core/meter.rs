//! What each source stream of a track carries, in bit/s: the allocation weighs simulcast
//! layers by it. Counted per packet on the forwarding path (a few streams per track, so a
//! short list), turned into a rate once a second.

use std::time::Instant;

/// Bytes a forwarded packet costs on the wire beyond its payload: RTP header and extensions,
/// SRTP tag, UDP and IP headers.
pub const PACKET_OVERHEAD: u64 = 60;

/// Per source stream: bytes counted since the last sample, and the smoothed rate.
#[derive(Debug, Default)]
pub struct Meter {
    streams: Vec<(u32, u64, u64)>,
    sampled: Option<Instant>,
}

impl Meter {
    /// Counts a packet of `payload` bytes from source `ssrc`.
    pub fn count(&mut self, ssrc: u32, payload: usize) {
        let bytes = payload as u64 + PACKET_OVERHEAD;
        match self.streams.iter_mut().find(|(s, _, _)| *s == ssrc) {
            Some((_, counted, _)) => *counted += bytes,
            None => self.streams.push((ssrc, bytes, 0)),
        }
    }

    /// Turns what was counted since the last sample into rates (smoothed over about two
    /// samples: a keyframe makes one second of video much larger than the next).
    pub fn sample(&mut self, now: Instant) {
        let Some(since) = self.sampled.replace(now) else {
            for (_, counted, _) in &mut self.streams {
                *counted = 0;
            }
            return;
        };
        let seconds = now.saturating_duration_since(since).as_secs_f64();
        if seconds <= 0.0 {
            return;
        }
        for (_, counted, rate) in &mut self.streams {
            let measured = (*counted * 8) as f64 / seconds;
            *rate = if *rate == 0 {
                measured as u64
            } else {
                f64::midpoint(*rate as f64, measured) as u64
            };
            *counted = 0;
        }
    }

    /// The rate of source `ssrc` in bit/s (0 until measured).
    pub fn rate(&self, ssrc: u32) -> u64 {
        self.streams
            .iter()
            .find(|(s, _, _)| *s == ssrc)
            .map_or(0, |(_, _, rate)| *rate)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn rates_per_stream_smoothed_over_samples() {
        let mut m = Meter::default();
        let t0 = Instant::now();
        m.sample(t0);
        for _ in 0..100 {
            m.count(7, 1000 - PACKET_OVERHEAD as usize);
        }
        m.count(9, 500 - PACKET_OVERHEAD as usize);
        assert_eq!(m.rate(7), 0, "nothing until sampled");
        m.sample(t0 + Duration::from_secs(1));
        assert_eq!(m.rate(7), 800_000);
        assert_eq!(m.rate(9), 4_000);
        assert_eq!(m.rate(8), 0);
        // A silent second halves the smoothed rate.
        m.sample(t0 + Duration::from_secs(2));
        assert_eq!(m.rate(7), 400_000);
    }
}
