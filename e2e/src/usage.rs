//! A process's resources as the kernel counts them: resident memory and its peak
//! (`/proc/<pid>/status`), and CPU time in user and kernel mode (`/proc/<pid>/stat`).

use std::time::Duration;

use crate::error::{Error, Result};

/// The kernel's clock ticks per second in `/proc/<pid>/stat` (`USER_HZ`, 100 on Linux
/// whatever the kernel's own tick rate).
const USER_HZ: u64 = 100;

/// Memory and CPU time of a process at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Resident set size (VmRSS), bytes.
    pub rss: u64,
    /// Peak resident set size (VmHWM), bytes.
    pub peak: u64,
    /// CPU time so far, user plus kernel.
    pub cpu: Duration,
}

impl Usage {
    /// Reads the usage of process `pid`.
    pub fn of(pid: u32) -> Result<Self> {
        let status_path = format!("/proc/{pid}/status");
        let status = std::fs::read_to_string(&status_path)
            .map_err(|e| Error::io(format!("cannot read {status_path}"), e))?;
        let stat_path = format!("/proc/{pid}/stat");
        let stat = std::fs::read_to_string(&stat_path)
            .map_err(|e| Error::io(format!("cannot read {stat_path}"), e))?;
        let kb = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .map(|kb| kb * 1024)
                .ok_or_else(|| Error::Setup(format!("{status_path} has no {name}")))
        };
        Ok(Self {
            rss: kb("VmRSS:")?,
            peak: kb("VmHWM:")?,
            cpu: cpu_time(&stat)
                .ok_or_else(|| Error::Setup(format!("{stat_path}: no utime and stime")))?,
        })
    }
}

/// User plus kernel time from a `/proc/<pid>/stat` line. The command name (field 2) may hold
/// spaces and parentheses, so fields are counted from its closing parenthesis.
fn cpu_time(stat: &str) -> Option<Duration> {
    let after_name = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 of the line are the 12th and 13th after the name.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 1000 / USER_HZ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_read_past_a_command_name_with_spaces() {
        let stat = "4242 (ruche operator) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 75 0 0 20 0 12 0 100 1000000 500 18446744073709551615";
        assert_eq!(cpu_time(stat), Some(Duration::from_millis(3250)));
        assert_eq!(cpu_time("garbage"), None);
    }

    #[test]
    fn this_process_has_a_usage() {
        let u = Usage::of(std::process::id()).unwrap_or_default();
        assert!(u.rss > 0 && u.peak >= u.rss, "{u:?}");
    }
}
