//! What a [`DeltaFifo`](super::DeltaFifo) queues: [`Delta`]s, gathered per key into
//! [`Deltas`].

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use crate::key::{DeletedFinalStateUnknown, object_key};

/// The kind of change a [`Delta`] records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeltaType {
    /// The object was created (watch `ADDED`).
    Added,
    /// The object changed (watch `MODIFIED`).
    Updated,
    /// The object was deleted; the delta holds its final state, or a
    /// [`DeletedFinalStateUnknown`] when the deletion was inferred from a relist.
    Deleted,
    /// The object was listed by a relist; it may or may not have changed.
    Replaced,
    /// A periodic resync re-delivered the cached object.
    Sync,
}

/// The object a [`Delta`] carries: the object itself or, for a deletion inferred from a
/// relist, a tombstone holding its last known state.
pub enum DeltaObject<K> {
    /// The object (its state after the change; before it, for a deletion).
    Object(Arc<K>),
    /// A tombstone: deleted while the watch was down, final state unknown.
    DeletedFinalStateUnknown(DeletedFinalStateUnknown<K>),
}

/// One change to an object: what happened and the object's state after it (client-go's
/// `Delta`).
pub struct Delta<K> {
    /// What happened.
    pub kind: DeltaType,
    /// The object.
    pub object: DeltaObject<K>,
}

/// All the changes queued for one key, oldest first; never empty (client-go's `Deltas`).
pub struct Deltas<K> {
    pub(super) key: String,
    pub(super) deltas: Vec<Delta<K>>,
}

// === impl DeltaObject ===

impl<K> DeltaObject<K> {
    /// The object, or the last known state held by a tombstone.
    pub fn object(&self) -> &Arc<K> {
        match self {
            Self::Object(obj) => obj,
            Self::DeletedFinalStateUnknown(tombstone) => &tombstone.obj,
        }
    }

    /// The tombstone, if this is one.
    pub fn as_tombstone(&self) -> Option<&DeletedFinalStateUnknown<K>> {
        match self {
            Self::Object(_) => None,
            Self::DeletedFinalStateUnknown(tombstone) => Some(tombstone),
        }
    }

    /// Whether this is a [`DeletedFinalStateUnknown`].
    pub fn is_tombstone(&self) -> bool {
        matches!(self, Self::DeletedFinalStateUnknown(_))
    }
}

impl<K: kube::Resource> DeltaObject<K> {
    /// The store key: the object's, or the tombstone's (client-go's `DeltaFIFO.KeyOf`).
    pub fn key(&self) -> String {
        match self {
            Self::Object(obj) => object_key(&**obj),
            Self::DeletedFinalStateUnknown(tombstone) => tombstone.key.clone(),
        }
    }
}

impl<K> Clone for DeltaObject<K> {
    fn clone(&self) -> Self {
        match self {
            Self::Object(obj) => Self::Object(Arc::clone(obj)),
            Self::DeletedFinalStateUnknown(t) => Self::DeletedFinalStateUnknown(t.clone()),
        }
    }
}

impl<K: fmt::Debug> fmt::Debug for DeltaObject<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Object(obj) => f.debug_tuple("Object").field(obj).finish(),
            Self::DeletedFinalStateUnknown(t) => t.fmt(f),
        }
    }
}

impl<K: PartialEq> PartialEq for DeltaObject<K> {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Object(a), Self::Object(b)) => a == b,
            (Self::DeletedFinalStateUnknown(a), Self::DeletedFinalStateUnknown(b)) => a == b,
            _ => false,
        }
    }
}

impl<K> From<Arc<K>> for DeltaObject<K> {
    fn from(obj: Arc<K>) -> Self {
        Self::Object(obj)
    }
}

impl<K> From<DeletedFinalStateUnknown<K>> for DeltaObject<K> {
    fn from(tombstone: DeletedFinalStateUnknown<K>) -> Self {
        Self::DeletedFinalStateUnknown(tombstone)
    }
}

// === impl Delta ===

impl<K> Delta<K> {
    /// A delta of `kind` for `object`.
    pub fn new(kind: DeltaType, object: impl Into<DeltaObject<K>>) -> Self {
        Self {
            kind,
            object: object.into(),
        }
    }

    /// If `self` (newer) and `older` record the same event, the delta to keep in their place
    /// (client-go's `isDup`): of two deletions, the one with more information, i.e. not a
    /// tombstone when the older is one, else the older.
    pub(super) fn dedup_with(&self, older: &Self) -> Option<Self> {
        if self.kind != DeltaType::Deleted || older.kind != DeltaType::Deleted {
            return None;
        }
        if older.object.is_tombstone() {
            Some(self.clone())
        } else {
            Some(older.clone())
        }
    }
}

impl<K> Clone for Delta<K> {
    fn clone(&self) -> Self {
        Self {
            kind: self.kind,
            object: self.object.clone(),
        }
    }
}

impl<K: fmt::Debug> fmt::Debug for Delta<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delta")
            .field("kind", &self.kind)
            .field("object", &self.object)
            .finish()
    }
}

impl<K: PartialEq> PartialEq for Delta<K> {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && self.object == other.object
    }
}

// === impl Deltas ===

impl<K> Deltas<K> {
    /// The key all these deltas are for.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The oldest delta.
    pub fn oldest(&self) -> Option<&Delta<K>> {
        self.deltas.first()
    }

    /// The newest delta.
    pub fn newest(&self) -> Option<&Delta<K>> {
        self.deltas.last()
    }

    /// The deltas, oldest first.
    pub fn into_vec(self) -> Vec<Delta<K>> {
        self.deltas
    }
}

impl<K: kube::Resource> Deltas<K> {
    /// `deltas` (oldest first) under the key of the newest one; `None` if empty.
    ///
    /// Deltas normally come from [`DeltaFifo::pop`](super::DeltaFifo::pop); this builds
    /// them for tests of the code that consumes them.
    pub fn from_vec(deltas: Vec<Delta<K>>) -> Option<Self> {
        let key = deltas.last()?.object.key();
        Some(Self { key, deltas })
    }
}

/// Appends `delta` to `deltas`, then merges the last two if they record the same deletion
/// (client-go's `dedupDeltas`).
pub(super) fn push_deduped<K>(deltas: &mut Vec<Delta<K>>, delta: Delta<K>) {
    deltas.push(delta);
    let n = deltas.len();
    if n < 2 {
        return;
    }
    if let Some(keep) = deltas[n - 1].dedup_with(&deltas[n - 2]) {
        deltas[n - 2] = keep;
        deltas.truncate(n - 1);
    }
}

impl<K> Deref for Deltas<K> {
    type Target = [Delta<K>];

    fn deref(&self) -> &[Delta<K>] {
        &self.deltas
    }
}

impl<K> IntoIterator for Deltas<K> {
    type Item = Delta<K>;
    type IntoIter = std::vec::IntoIter<Delta<K>>;

    fn into_iter(self) -> Self::IntoIter {
        self.deltas.into_iter()
    }
}

impl<'a, K> IntoIterator for &'a Deltas<K> {
    type Item = &'a Delta<K>;
    type IntoIter = std::slice::Iter<'a, Delta<K>>;

    fn into_iter(self) -> Self::IntoIter {
        self.deltas.iter()
    }
}

impl<K> Clone for Deltas<K> {
    fn clone(&self) -> Self {
        Self {
            key: self.key.clone(),
            deltas: self.deltas.clone(),
        }
    }
}

impl<K: fmt::Debug> fmt::Debug for Deltas<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deltas")
            .field("key", &self.key)
            .field("deltas", &self.deltas)
            .finish()
    }
}

impl<K: PartialEq> PartialEq for Deltas<K> {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key && self.deltas == other.deltas
    }
}
