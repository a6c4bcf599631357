//! Polling until a condition holds, with a deadline and the last state seen for the message.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// How often [`until`] checks.
pub const POLL: Duration = Duration::from_millis(500);

/// Calls `check` every [`POLL`] until it returns `Ok`, or fails with [`Error::Timeout`] after
/// `timeout`, quoting the last `Err` it returned (the state seen, to tell why).
pub async fn until<T, F, Fut>(what: &str, timeout: Duration, check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    until_every(what, timeout, POLL, check).await
}

/// [`until`] with a chosen polling period.
pub async fn until_every<T, F, Fut>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut check: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let start = Instant::now();
    let mut last = String::from("(not checked yet)");
    loop {
        // A check that hangs (an API call with no answer) counts against the deadline too.
        let left = timeout.saturating_sub(start.elapsed());
        match tokio::time::timeout(left.max(Duration::from_secs(1)), check()).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(state)) => last = state,
            Err(_) => last = format!("the check itself did not finish ({last})"),
        }
        if start.elapsed() >= timeout {
            return Err(Error::Timeout {
                what: what.to_string(),
                after: start.elapsed(),
                last,
            });
        }
        tokio::time::sleep(every).await;
    }
}
