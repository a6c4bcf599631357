//! The keys of what the operator keeps in memory. Every ministry may call its fleet `visio`
//! and its nodes `visio-a-0`: nothing is ever looked up by name alone, always by namespace
//! and name, and each kind has its own key type so that a node's key cannot be passed where
//! a fleet's is expected.

use std::fmt;

use kube::ResourceExt;
use ruche_crds::{MediaFleet, MediaNode, Room};

use crate::core::RoomKey;

/// A `MediaFleet`: namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FleetKey {
    /// Namespace.
    pub namespace: String,
    /// Fleet name.
    pub name: String,
}

/// A `MediaNode`: namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeKey {
    /// Namespace.
    pub namespace: String,
    /// Node name.
    pub name: String,
}

impl FleetKey {
    /// The key of fleet `name` in `namespace`.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// A fleet's own key.
    pub fn of(fleet: &MediaFleet) -> Self {
        Self::new(fleet.namespace().unwrap_or_default(), fleet.name_any())
    }

    /// The key of the fleet a node belongs to (same namespace).
    pub fn of_node(node: &MediaNode) -> Self {
        Self::new(
            node.namespace().unwrap_or_default(),
            node.spec.fleet.clone(),
        )
    }

    /// The key of the fleet a room asks for (same namespace).
    pub fn of_room(room: &Room) -> Self {
        Self::new(
            room.namespace().unwrap_or_default(),
            room.spec.fleet.clone(),
        )
    }

    /// The key of a node of this fleet.
    pub fn node(&self, name: impl Into<String>) -> NodeKey {
        NodeKey::new(self.namespace.clone(), name)
    }

    /// The key of a room of this fleet's namespace.
    pub fn room(&self, name: &str) -> RoomKey {
        RoomKey::new(format!("{}/{name}", self.namespace))
    }
}

impl NodeKey {
    /// The key of node `name` in `namespace`.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// A node's own key.
    pub fn of(node: &MediaNode) -> Self {
        Self::new(node.namespace().unwrap_or_default(), node.name_any())
    }
}

/// The key of a room: `namespace/name`.
pub fn room_key(room: &Room) -> RoomKey {
    RoomKey::new(format!(
        "{}/{}",
        room.namespace().unwrap_or_default(),
        room.name_any()
    ))
}

/// The name part of a room key (`namespace/name`): what a media node knows the room by.
pub fn room_name(key: &RoomKey) -> &str {
    key.0.split_once('/').map_or(&key.0, |(_, name)| name)
}

impl fmt::Display for FleetKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl fmt::Display for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_names_in_two_namespaces_are_two_keys() {
        let a = FleetKey::new("interieur", "visio");
        let b = FleetKey::new("armees", "visio");
        assert_ne!(a, b);
        assert_ne!(a.node("visio-a-0"), b.node("visio-a-0"));
        assert_eq!(a.to_string(), "interieur/visio");
        assert_eq!(a.room("r1"), RoomKey::new("interieur/r1"));
        assert_eq!(room_name(&a.room("r1")), "r1");
    }
}
