//! Kubernetes events on the objects the operator acts on (`kubectl describe` shows them).
//!
//! Each event is one create of an `events.k8s.io/v1` Event, and nothing is kept once it is
//! written: the controllers publish an event when something happens or changes (a room placed,
//! a pod refused), never the same one over and over, so there are no repeats to fold into a
//! series, and memory does not grow with the number of rooms.
//!
//! The running operator queues its events to writers of their own ([`Events::queued`]), so a
//! reconcile does not wait for its event: a room's placement is done when its status is
//! written. A full queue (the API server far behind) drops events rather than memory or
//! placements, and counts them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::StreamExt;
use tokio::sync::mpsc;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

/// Normal or Warning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// Something went as it should.
    Normal,
    /// Something a person may have to look at.
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "Normal",
            Self::Warning => "Warning",
        }
    }
}

/// What happened: the action taken and its reason (both CamelCase words), and a note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Happened<'a> {
    /// Normal or Warning.
    pub type_: EventType,
    /// What the operator did (`Place`, `Reconcile`, `Scale`).
    pub action: &'a str,
    /// Why, in one word (`Scheduled`, `PodRefused`).
    pub reason: &'a str,
    /// In words, for people.
    pub note: &'a str,
}

/// The API server refuses an event whose note exceeds this many bytes.
pub const EVENT_NOTE_MAX: usize = 1024;

/// Writes events as the operator (`reportingController`) and this replica
/// (`reportingInstance`).
#[derive(Clone)]
pub struct Events {
    client: Client,
    controller: String,
    instance: String,
    queue: Option<mpsc::Sender<Event>>,
    dropped: Arc<AtomicU64>,
}

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

impl Events {
    /// Events reported by `controller`, from replica `instance`, each written before
    /// [`Events::publish`] returns.
    pub fn new(client: Client, controller: &str, instance: &str) -> Self {
        Self {
            client,
            controller: controller.to_string(),
            instance: instance.to_string(),
            queue: None,
            dropped: Arc::default(),
        }
    }

    /// Events queued (up to `capacity`) to `writers` tasks that write them, so that
    /// [`Events::publish`] does not wait for the API server. Must be called in a runtime.
    pub fn queued(
        client: Client,
        controller: &str,
        instance: &str,
        capacity: usize,
        writers: usize,
    ) -> Self {
        let (tx, rx) = mpsc::channel::<Event>(capacity.max(1));
        let api_client = client.clone();
        tokio::spawn(async move {
            futures::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|event| (event, rx))
            })
            .for_each_concurrent(writers.max(1), |event| {
                let client = api_client.clone();
                async move { write(&client, &event).await }
            })
            .await;
        });
        Self {
            queue: Some(tx),
            ..Self::new(client, controller, instance)
        }
    }

    /// Events dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Records an event on `regarding`, naming `related` (a node a fleet created, say) when
    /// given. An event that cannot be written is not worth failing a reconcile for: it is
    /// logged and dropped.
    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        happened: &Happened<'_>,
        related: Option<ObjectReference>,
    ) {
        let event = self.build(regarding, happened, related, Timestamp::now());
        match &self.queue {
            None => write(&self.client, &event).await,
            Some(queue) => {
                if queue.try_send(event).is_err() {
                    let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                    if n.is_power_of_two() {
                        tracing::warn!(dropped = n, "event queue full: events dropped");
                    }
                }
            }
        }
    }

    fn build(
        &self,
        regarding: &ObjectReference,
        happened: &Happened<'_>,
        related: Option<ObjectReference>,
        now: Timestamp,
    ) -> Event {
        // Unique within this process even for two events in the same nanosecond.
        let sequence = SEQUENCE.fetch_add(1, Ordering::Relaxed);
        let subject = regarding.name.as_deref().unwrap_or(&self.controller);
        Event {
            metadata: ObjectMeta {
                name: Some(format!("{subject}.{:x}{sequence:04x}", now.as_nanosecond())),
                namespace: regarding.namespace.clone(),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(now)),
            action: Some(happened.action.to_string()),
            reason: Some(happened.reason.to_string()),
            note: Some(cut(happened.note)),
            type_: Some(happened.type_.as_str().to_string()),
            regarding: Some(regarding.clone()),
            related,
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..Event::default()
        }
    }
}

/// Writes one event; one that cannot be written is logged and dropped.
async fn write(client: &Client, event: &Event) {
    let namespace = event.metadata.namespace.as_deref().unwrap_or("default");
    let api: Api<Event> = Api::namespaced(client.clone(), namespace);
    if let Err(e) = api.create(&PostParams::default(), event).await {
        tracing::debug!(error = %e, reason = ?event.reason, "event not recorded");
    }
}

/// `note`, cut at a character boundary to fit [`EVENT_NOTE_MAX`] (a media node's error can be
/// long), marked with an ellipsis when cut.
fn cut(note: &str) -> String {
    if note.len() <= EVENT_NOTE_MAX {
        return note.to_string();
    }
    let mut end = EVENT_NOTE_MAX - '…'.len_utf8();
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &note[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_event_notes_are_cut_to_what_the_api_server_takes() {
        assert_eq!(cut("node failed"), "node failed");
        let long = "é".repeat(800);
        let cut = cut(&long);
        assert!(cut.len() <= EVENT_NOTE_MAX, "{}", cut.len());
        assert!(cut.ends_with('…'));
        assert!(cut.starts_with("éé"));
    }
}
