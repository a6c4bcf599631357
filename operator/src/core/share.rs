//! A count or a percentage of something, as `IntOrString` fields spell it (`400`, `"20%"`):
//! the rollout's surge and unavailability, the autoscaler's buffers.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// A count, or a percentage of a total known only when it is used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Share {
    /// So many.
    Count(u32),
    /// So many hundredths of the total.
    Percent(u32),
}

/// A value that is neither a count nor a percentage.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is neither a non-negative count nor a percentage such as \"20%\"")]
pub struct ShareError {
    /// The value as written.
    pub value: String,
}

impl Share {
    /// Reads `400`, `"400"` or `"20%"`.
    pub fn parse(value: &IntOrString) -> Result<Self, ShareError> {
        let bad = || ShareError {
            value: match value {
                IntOrString::Int(n) => n.to_string(),
                IntOrString::String(s) => s.clone(),
            },
        };
        match value {
            IntOrString::Int(n) => u32::try_from(*n).map(Self::Count).map_err(|_| bad()),
            IntOrString::String(s) => match s.strip_suffix('%') {
                Some(pct) => pct.parse().map(Self::Percent).map_err(|_| bad()),
                None => s.parse().map(Self::Count).map_err(|_| bad()),
            },
        }
    }

    /// The share of `total`: a count as is, a percentage rounded up or down.
    pub fn of(self, total: u32, round_up: bool) -> u32 {
        match self {
            Self::Count(n) => n,
            Self::Percent(pct) => {
                let product = u64::from(total) * u64::from(pct);
                let n = if round_up {
                    product.div_ceil(100)
                } else {
                    product / 100
                };
                u32::try_from(n).unwrap_or(u32::MAX)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_percentages() {
        let s = |v: &str| Share::parse(&IntOrString::String(v.into()));
        assert_eq!(Share::parse(&IntOrString::Int(400)), Ok(Share::Count(400)));
        assert_eq!(s("400"), Ok(Share::Count(400)));
        assert_eq!(s("20%"), Ok(Share::Percent(20)));
        assert!(s("-3").is_err());
        assert!(s("20 %").is_err());
        assert!(Share::parse(&IntOrString::Int(-1)).is_err());
        assert_eq!(Share::Percent(25).of(10, true), 3);
        assert_eq!(Share::Percent(25).of(10, false), 2);
        assert_eq!(Share::Count(7).of(1000, true), 7);
    }
}
