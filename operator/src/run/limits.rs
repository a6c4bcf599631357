//! Process limits the operator raises for itself at start.
//!
//! The admin API poller keeps a connection open to every media node it polls, so a fleet of a
//! thousand nodes needs over a thousand file descriptors. Container runtimes often start
//! processes with a soft limit of 1,024 and a much higher hard limit; the soft limit is
//! raised to the hard one, as any unprivileged process may.

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// What [`raise_open_files`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenFiles {
    /// The soft limit was already the hard one.
    Unchanged(u64),
    /// The soft limit went from the first value to the second.
    Raised(u64, u64),
}

/// Raises the soft limit on open files to the hard limit.
pub fn raise_open_files() -> Result<OpenFiles, nix::Error> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft >= hard {
        return Ok(OpenFiles::Unchanged(soft));
    }
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    Ok(OpenFiles::Raised(soft, hard))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_ends_at_the_hard_limit() {
        let outcome = raise_open_files().expect("getrlimit and setrlimit work on Linux");
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
        assert_eq!(soft, hard, "{outcome:?}");
        match outcome {
            OpenFiles::Unchanged(n) => assert_eq!(n, soft),
            OpenFiles::Raised(before, after) => {
                assert!(before < after);
                assert_eq!(after, hard);
            }
        }
    }
}
