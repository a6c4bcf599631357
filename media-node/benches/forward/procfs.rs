//! What the kernel says about an SFU process: CPU time, resident memory, and stopping it.

use std::process::{Child, Command};
use std::time::Duration;

/// Clock ticks per second of `utime`/`stime` in `/proc/<pid>/stat` (`getconf CLK_TCK`).
pub fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&t: &u64| t > 0)
        .unwrap_or(100)
}

/// User plus system CPU time of the whole process `pid` (every thread, live or exited), in
/// clock ticks.
pub fn cpu_ticks(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| format!("{path}: no command name"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ")" come field 3 (state) onwards: utime is field 14, stime field 15.
    let field = |n: usize| -> Result<u64, String> {
        fields
            .get(n - 3)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| format!("{path}: field {n} missing"))
    };
    Ok(field(14)? + field(15)?)
}

/// CPU time actually run by the threads of `pid` that are alive now, in nanoseconds
/// (`/proc/<pid>/task/*/schedstat`): precise, but blind to threads that exited.
pub fn task_cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| {
            s.split_whitespace()
                .next()
                .and_then(|f| f.parse::<u64>().ok())
        })
        .sum()
}

/// Threads of `pid`.
pub fn threads(pid: u32) -> u64 {
    status_field(pid, "Threads:").unwrap_or(0)
}

/// Resident memory of a process, in KiB.
#[derive(Clone, Copy, Debug, Default)]
pub struct Resident {
    /// All of it (`VmRSS`): with the pages of the program's code and libraries it has run.
    pub all: u64,
    /// Its private, anonymous part (`RssAnon`): heap, stacks, buffers. Code pages are paged
    /// in once, the first time a path runs, and shared with every process of that program,
    /// so they do not grow with participants; this does.
    pub private: u64,
}

/// Resident memory of `pid`.
pub fn resident(pid: u32) -> Result<Resident, String> {
    let field = |name: &str| {
        status_field(pid, name).ok_or_else(|| format!("/proc/{pid}/status: no {name}"))
    };
    Ok(Resident {
        all: field("VmRSS:")?,
        private: field("RssAnon:")?,
    })
}

fn status_field(pid: u32, name: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// A child process that is killed (and reaped) when dropped.
pub struct Guard {
    /// What it is, for messages.
    pub name: String,
    child: Child,
}

impl Guard {
    /// Starts `command`.
    pub fn spawn(name: &str, command: &mut Command) -> Result<Self, String> {
        let child = command
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        Ok(Self {
            name: name.into(),
            child,
        })
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Some(reason)` if it exited.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(format!("{} exited: {status}", self.name)),
            Ok(None) => None,
            Err(e) => Some(format!("{}: {e}", self.name)),
        }
    }

    /// Kills it and waits for it to be gone.
    pub fn stop(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        let _ = self.child.kill();
        for _ in 0..100 {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.wait();
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.stop();
    }
}
