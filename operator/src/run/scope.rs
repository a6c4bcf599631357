//! Which namespaces the operator serves, and one watch per kind over them.
//!
//! The API server watches one namespace or all of them, never a list. A ministry's install
//! that serves several namespaces (RBAC granted in each, nothing cluster-wide) runs one watch
//! per namespace and merges them into the one stream a cache (`reflector`) and a controller
//! expect. The merge is [`Merge`]: a cache treats `Init … InitDone` as "replace everything",
//! so the namespaces' lists become one list (done when every namespace has listed once), and a
//! later re-list of one namespace (its watch restarted) becomes applies for what it holds and
//! deletes for what it no longer holds, so the other namespaces' objects stay cached.

#[cfg(test)]
use std::collections::HashMap;
use std::collections::HashSet;
use std::hash::Hash;

use futures::stream::{self, BoxStream, StreamExt as _};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher::{self, Event, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;

/// The namespaces the operator serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchScope {
    /// Every namespace (a cluster-wide install).
    All,
    /// These namespaces only: at least one, each once, in the order given.
    Namespaces(Vec<String>),
}

impl WatchScope {
    /// The scope `--namespace` names: a comma-separated list, or every namespace when empty.
    pub fn of_list(namespaces: &[String]) -> Self {
        let mut seen = HashSet::new();
        let list: Vec<String> = namespaces
            .iter()
            .flat_map(|n| n.split(','))
            .map(str::trim)
            .filter(|n| !n.is_empty() && seen.insert(n.to_string()))
            .map(str::to_string)
            .collect();
        if list.is_empty() {
            Self::All
        } else {
            Self::Namespaces(list)
        }
    }

    /// The first namespace served, if the scope is a list (where the Lease goes by default).
    pub fn first(&self) -> Option<&str> {
        match self {
            Self::All => None,
            Self::Namespaces(list) => list.first().map(String::as_str),
        }
    }

    /// One line for logs: `all namespaces` or `namespaces a, b`.
    pub fn describe(&self) -> String {
        match self {
            Self::All => "all namespaces".to_string(),
            Self::Namespaces(list) => format!("namespaces {}", list.join(", ")),
        }
    }
}

/// The watch events of `K` in `scope`, as one stream a cache can reflect. `store` is the
/// cache this stream feeds (a merged re-list reads from it what to delete).
pub fn watch<K>(
    client: &Client,
    scope: &WatchScope,
    config: &watcher::Config,
    store: Store<K>,
) -> BoxStream<'static, watcher::Result<Event<K>>>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
{
    match scope {
        WatchScope::All => watcher(Api::all(client.clone()), config.clone()).boxed(),
        WatchScope::Namespaces(list) if list.len() == 1 => {
            watcher(Api::namespaced(client.clone(), &list[0]), config.clone()).boxed()
        }
        WatchScope::Namespaces(list) => {
            let parts = list.iter().enumerate().map(|(i, ns)| {
                watcher(Api::<K>::namespaced(client.clone(), ns), config.clone())
                    .map(move |e| (i, e))
                    .boxed()
            });
            let mut merge = Merge::new(list.len(), store);
            // The merged list starts at once; each namespace's events then flow through it.
            let start = stream::iter([Ok(Event::Init)]);
            let merged = stream::select_all(parts).flat_map(move |(part, event)| {
                let out: Vec<watcher::Result<Event<K>>> = match event {
                    Ok(event) => merge.on(part, event).into_iter().map(Ok).collect(),
                    Err(e) => vec![Err(e)],
                };
                stream::iter(out)
            });
            start.chain(merged).boxed()
        }
    }
}

/// One namespace's watch, as the merge sees it.
struct Part<K>
where
    K: Resource,
    K::DynamicType: Eq + Hash,
{
    /// What it held at its last list, and was applied since.
    known: HashSet<ObjectRef<K>>,
    /// What its current re-list has shown so far, while it lists.
    listing: Option<HashSet<ObjectRef<K>>>,
    /// Whether it has listed once.
    listed: bool,
}

/// Merges the watch events of several namespaces into one stream with the semantics of a
/// single watch (see the module documentation). Pure but for reading the cache on a re-list.
pub struct Merge<K>
where
    K: Resource + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    parts: Vec<Part<K>>,
    /// Whether the merged list is done (every namespace has listed once).
    ready: bool,
    /// Events of namespaces that listed while others still list, replayed once all have.
    held: Vec<Event<K>>,
    store: Store<K>,
}

impl<K> Merge<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    /// A merge of `parts` namespaces' watches feeding `store`. The caller emits the merged
    /// list's `Init` itself, before any event.
    pub fn new(parts: usize, store: Store<K>) -> Self {
        Self {
            parts: (0..parts)
                .map(|_| Part {
                    known: HashSet::new(),
                    listing: None,
                    listed: false,
                })
                .collect(),
            ready: false,
            held: Vec::new(),
            store,
        }
    }

    /// What namespace `part`'s `event` means to the merged stream.
    pub fn on(&mut self, part: usize, event: Event<K>) -> Vec<Event<K>> {
        let ready = self.ready;
        let Some(p) = self.parts.get_mut(part) else {
            return Vec::new();
        };
        match event {
            Event::Init => {
                p.listing = Some(HashSet::new());
                Vec::new()
            }
            Event::InitApply(object) => {
                let key = ObjectRef::from_obj(&object);
                if let Some(listing) = p.listing.as_mut() {
                    listing.insert(key.clone());
                }
                p.known.insert(key);
                if ready {
                    vec![Event::Apply(object)]
                } else {
                    vec![Event::InitApply(object)]
                }
            }
            Event::InitDone => {
                let seen = p.listing.take().unwrap_or_default();
                let stale: Vec<ObjectRef<K>> = p.known.difference(&seen).cloned().collect();
                p.known = seen;
                p.listed = true;
                let mut out: Vec<Event<K>> = stale
                    .iter()
                    .filter_map(|key| self.store.get(key))
                    .map(|object| Event::Delete((*object).clone()))
                    .collect();
                if !ready && self.parts.iter().all(|p| p.listed) {
                    self.ready = true;
                    out.push(Event::InitDone);
                    out.append(&mut self.held);
                }
                out
            }
            Event::Apply(object) => {
                p.known.insert(ObjectRef::from_obj(&object));
                self.pass(Event::Apply(object))
            }
            Event::Delete(object) => {
                p.known.remove(&ObjectRef::from_obj(&object));
                self.pass(Event::Delete(object))
            }
        }
    }

    /// A change after a namespace listed: now, or once the merged list is done (a cache that
    /// is listing would apply it to the old state it is about to replace).
    fn pass(&mut self, event: Event<K>) -> Vec<Event<K>> {
        if self.ready {
            vec![event]
        } else {
            self.held.push(event);
            Vec::new()
        }
    }
}

/// How many of each namespace's objects the merge knows, for tests.
#[cfg(test)]
fn known<K>(merge: &Merge<K>) -> HashMap<usize, usize>
where
    K: Resource + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    merge
        .parts
        .iter()
        .enumerate()
        .map(|(i, p)| (i, p.known.len()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::ObjectMeta;
    use kube::runtime::reflector;

    fn cm(ns: &str, name: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(ns.into()),
                ..ObjectMeta::default()
            },
            ..ConfigMap::default()
        }
    }

    /// Feeds the merged stream into a real cache, as the operator does.
    struct Cache {
        store: Store<ConfigMap>,
        writer: reflector::store::Writer<ConfigMap>,
        merge: Merge<ConfigMap>,
    }

    impl Cache {
        fn new(parts: usize) -> Self {
            let (store, mut writer) = reflector::store::<ConfigMap>();
            writer.apply_watcher_event(&Event::Init);
            let merge = Merge::new(parts, store.clone());
            Self {
                store,
                writer,
                merge,
            }
        }

        fn feed(&mut self, part: usize, event: Event<ConfigMap>) -> Vec<String> {
            let out = self.merge.on(part, event);
            for e in &out {
                self.writer.apply_watcher_event(e);
            }
            out.iter().map(describe).collect()
        }

        fn names(&self) -> Vec<String> {
            let mut names: Vec<String> = self
                .store
                .state()
                .iter()
                .map(|c| {
                    format!(
                        "{}/{}",
                        c.metadata.namespace.as_deref().unwrap_or_default(),
                        c.metadata.name.as_deref().unwrap_or_default()
                    )
                })
                .collect();
            names.sort();
            names
        }
    }

    fn describe(e: &Event<ConfigMap>) -> String {
        let name = |c: &ConfigMap| c.metadata.name.clone().unwrap_or_default();
        match e {
            Event::Init => "Init".into(),
            Event::InitApply(c) => format!("InitApply {}", name(c)),
            Event::InitDone => "InitDone".into(),
            Event::Apply(c) => format!("Apply {}", name(c)),
            Event::Delete(c) => format!("Delete {}", name(c)),
        }
    }

    fn list(cache: &mut Cache, part: usize, objects: &[ConfigMap]) -> Vec<String> {
        let mut out = cache.feed(part, Event::Init);
        for o in objects {
            out.extend(cache.feed(part, Event::InitApply(o.clone())));
        }
        out.extend(cache.feed(part, Event::InitDone));
        out
    }

    #[test]
    fn the_cache_is_ready_only_when_every_namespace_has_listed() {
        let mut cache = Cache::new(2);
        let out = list(&mut cache, 0, &[cm("a", "x")]);
        assert_eq!(out, vec!["InitApply x"]);
        assert!(
            cache.names().is_empty(),
            "nothing is cached before the merged list ends"
        );
        let out = list(&mut cache, 1, &[cm("b", "y"), cm("b", "z")]);
        assert_eq!(out, vec!["InitApply y", "InitApply z", "InitDone"]);
        assert_eq!(cache.names(), vec!["a/x", "b/y", "b/z"]);
    }

    #[test]
    fn changes_of_a_listed_namespace_wait_for_the_others_then_apply() {
        let mut cache = Cache::new(2);
        list(&mut cache, 0, &[cm("a", "x")]);
        assert!(cache.feed(0, Event::Apply(cm("a", "new"))).is_empty());
        assert!(cache.feed(0, Event::Delete(cm("a", "x"))).is_empty());
        let out = list(&mut cache, 1, &[cm("b", "y")]);
        assert_eq!(
            out,
            vec!["InitApply y", "InitDone", "Apply new", "Delete x"]
        );
        assert_eq!(cache.names(), vec!["a/new", "b/y"]);
    }

    #[test]
    fn a_relist_of_one_namespace_deletes_what_it_lost_and_keeps_the_others() {
        let mut cache = Cache::new(2);
        list(&mut cache, 0, &[cm("a", "x"), cm("a", "gone")]);
        list(&mut cache, 1, &[cm("b", "y")]);
        cache.feed(0, Event::Apply(cm("a", "later")));
        // Namespace a's watch restarts: "gone" and "later" were deleted meanwhile.
        let out = list(&mut cache, 0, &[cm("a", "x"), cm("a", "fresh")]);
        let (mut changes, deletes): (Vec<String>, Vec<String>) =
            out.into_iter().partition(|e| !e.starts_with("Delete"));
        let mut deletes = deletes;
        deletes.sort();
        changes.sort();
        assert_eq!(changes, vec!["Apply fresh", "Apply x"]);
        assert_eq!(deletes, vec!["Delete gone", "Delete later"]);
        assert_eq!(cache.names(), vec!["a/fresh", "a/x", "b/y"]);
        assert_eq!(known(&cache.merge), HashMap::from([(0, 2), (1, 1)]));
    }

    #[test]
    fn an_event_of_an_unknown_part_is_ignored() {
        let mut cache = Cache::new(1);
        assert!(cache.feed(7, Event::Apply(cm("a", "x"))).is_empty());
    }

    #[test]
    fn the_scope_reads_a_comma_separated_list() {
        assert_eq!(WatchScope::of_list(&[]), WatchScope::All);
        assert_eq!(WatchScope::of_list(&[" ".into()]), WatchScope::All);
        let scope = WatchScope::of_list(&["a, b".into(), "a".into(), "c".into()]);
        assert_eq!(
            scope,
            WatchScope::Namespaces(vec!["a".into(), "b".into(), "c".into()])
        );
        assert_eq!(scope.first(), Some("a"));
        assert_eq!(scope.describe(), "namespaces a, b, c");
        assert_eq!(WatchScope::All.first(), None);
    }
}
