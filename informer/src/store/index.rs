//! The store's indices: for each named index function, index value → keys of the objects
//! that produce it (client-go's `storeIndex`).

use std::sync::Arc;

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};

use super::IndexFunc;
use crate::error::Error;

/// Index value → keys of the objects with that value. A value whose set would become empty
/// is removed (client-go's `deleteKeyFromIndex`, kubernetes#84959).
pub(super) type Index = HashMap<String, HashSet<Arc<str>>>;

/// The registered index functions and the indices they maintain.
pub(super) struct Indices<K> {
    /// Index name → function; always the same names as `indices`.
    funcs: HashMap<String, IndexFunc<K>>,
    /// Index name → index.
    indices: HashMap<String, Index>,
}

// === impl Indices ===

impl<K> Indices<K> {
    /// Indices with the given functions (names already checked unique), all empty.
    pub(super) fn new(funcs: impl IntoIterator<Item = (String, IndexFunc<K>)>) -> Self {
        let funcs: HashMap<_, _> = funcs.into_iter().collect();
        let indices = funcs.keys().map(|n| (n.clone(), Index::new())).collect();
        Self { funcs, indices }
    }

    /// The registered index names.
    pub(super) fn names(&self) -> Vec<String> {
        self.funcs.keys().cloned().collect()
    }

    /// Whether an index is registered under `name`.
    pub(super) fn contains(&self, name: &str) -> bool {
        self.funcs.contains_key(name)
    }

    /// Empties every index (the functions stay).
    pub(super) fn clear(&mut self) {
        for index in self.indices.values_mut() {
            index.clear();
        }
    }

    /// Moves `key` in every index from the values of `old` to those of `new`:
    /// `old: None` for an insertion, `new: None` for a deletion (client-go's
    /// `updateIndices`).
    pub(super) fn update(&mut self, key: &Arc<str>, old: Option<&K>, new: Option<&K>) {
        for (name, func) in &self.funcs {
            if let Some(index) = self.indices.get_mut(name) {
                update_single(func, index, key, old, new);
            }
        }
    }

    /// Registers `funcs` (names already checked: new and unique) and indexes `items` with
    /// them.
    pub(super) fn insert_funcs<'a>(
        &mut self,
        funcs: Vec<(String, IndexFunc<K>)>,
        items: impl Iterator<Item = (&'a Arc<str>, Arc<K>)> + Clone,
    ) where
        K: 'a,
    {
        for (name, func) in funcs {
            let mut index = Index::new();
            for (key, obj) in items.clone() {
                update_single(&func, &mut index, key, None, Some(&obj));
            }
            self.indices.insert(name.clone(), index);
            self.funcs.insert(name, func);
        }
    }

    /// The keys indexed under `value` in index `name` (`None`: no such value).
    pub(super) fn keys_by_value(
        &self,
        name: &str,
        value: &str,
    ) -> Result<Option<&HashSet<Arc<str>>>, Error> {
        Ok(self.index(name)?.get(value))
    }

    /// The keys sharing at least one value of index `name` with `obj` (client-go's
    /// `getKeysFromIndex`).
    pub(super) fn keys_matching(&self, name: &str, obj: &K) -> Result<HashSet<Arc<str>>, Error> {
        let index = self.index(name)?;
        let func = self.funcs.get(name).ok_or_else(|| not_found(name))?;
        let mut keys = HashSet::new();
        for value in func(obj) {
            if let Some(set) = index.get(&value) {
                keys.extend(set.iter().cloned());
            }
        }
        Ok(keys)
    }

    /// The values present in index `name` (none if there is no such index, as in client-go).
    pub(super) fn values(&self, name: &str) -> Vec<String> {
        self.indices
            .get(name)
            .map(|index| index.keys().cloned().collect())
            .unwrap_or_default()
    }

    fn index(&self, name: &str) -> Result<&Index, Error> {
        self.indices.get(name).ok_or_else(|| not_found(name))
    }

    /// The raw indices, to compare against a recomputation.
    #[cfg(test)]
    pub(super) fn raw(&self) -> &HashMap<String, Index> {
        &self.indices
    }

    /// The registered functions.
    #[cfg(test)]
    pub(super) fn funcs(&self) -> &HashMap<String, IndexFunc<K>> {
        &self.funcs
    }
}

fn not_found(name: &str) -> Error {
    Error::IndexNotFound {
        name: name.to_owned(),
    }
}

/// Moves `key` in one index from the values of `old` to those of `new` (client-go's
/// `updateSingleIndex`): values both produce are left untouched, values only `old` produces
/// lose the key (and disappear once no key has them), values only `new` produces gain it.
fn update_single<K>(
    func: &IndexFunc<K>,
    index: &mut Index,
    key: &Arc<str>,
    old: Option<&K>,
    new: Option<&K>,
) {
    let old_values = old.map(|o| func(o)).unwrap_or_default();
    let new_values = new.map(|n| func(n)).unwrap_or_default();
    // The common case: one value, unchanged.
    if old_values.len() == 1 && new_values.len() == 1 && old_values[0] == new_values[0] {
        return;
    }
    let old_set = ValueSet::new(&old_values);
    let new_set = ValueSet::new(&new_values);
    for value in &old_values {
        if new_set.contains(value) {
            continue;
        }
        if let Some(keys) = index.get_mut(value.as_str()) {
            keys.remove(&**key);
            if keys.is_empty() {
                index.remove(value.as_str());
            }
        }
    }
    for value in new_values {
        if old_set.contains(&value) {
            continue;
        }
        index.entry(value).or_default().insert(Arc::clone(key));
    }
}

/// Membership in a list of index values: a scan for short lists, a hash set for long ones.
enum ValueSet<'a> {
    Few(&'a [String]),
    Many(HashSet<&'a str>),
}

impl<'a> ValueSet<'a> {
    const SCAN_MAX: usize = 16;

    fn new(values: &'a [String]) -> Self {
        if values.len() <= Self::SCAN_MAX {
            Self::Few(values)
        } else {
            Self::Many(values.iter().map(String::as_str).collect())
        }
    }

    fn contains(&self, value: &str) -> bool {
        match self {
            Self::Few(values) => values.iter().any(|v| v == value),
            Self::Many(set) => set.contains(value),
        }
    }
}
