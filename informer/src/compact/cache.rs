//! A small cache of recently decoded objects, keyed by key and resourceVersion.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use parking_lot::Mutex;

/// Remembers the last `capacity` decoded objects (oldest evicted first).
pub(crate) struct DecodeCache<T> {
    capacity: usize,
    state: Mutex<State<T>>,
}

struct State<T> {
    map: HashMap<(String, String), Arc<T>, foldhash::fast::RandomState>,
    order: VecDeque<(String, String)>,
}

impl<T> DecodeCache<T> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            state: Mutex::new(State {
                map: HashMap::default(),
                order: VecDeque::new(),
            }),
        }
    }

    /// The cached object for `(key, rv)`, or the result of `decode`, cached.
    pub(crate) fn get_or_decode<E>(
        &self,
        key: &str,
        rv: &str,
        decode: impl FnOnce() -> Result<T, E>,
    ) -> Result<Arc<T>, E> {
        let id = (key.to_owned(), rv.to_owned());
        if let Some(hit) = self.state.lock().map.get(&id) {
            return Ok(Arc::clone(hit));
        }
        let object = Arc::new(decode()?);
        if self.capacity > 0 {
            let mut state = self.state.lock();
            if state.map.insert(id.clone(), Arc::clone(&object)).is_none() {
                state.order.push_back(id);
            }
            while state.order.len() > self.capacity {
                if let Some(old) = state.order.pop_front() {
                    state.map.remove(&old);
                }
            }
        }
        Ok(object)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.state.lock().map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_and_evicts_oldest() {
        let cache = DecodeCache::<u32>::new(2);
        let mut decodes = 0;
        let mut get = |k: &str, rv: &str| {
            *cache
                .get_or_decode(k, rv, || {
                    decodes += 1;
                    Ok::<_, ()>(decodes)
                })
                .unwrap()
        };
        assert_eq!(get("a", "1"), 1);
        assert_eq!(get("a", "1"), 1, "hit");
        assert_eq!(get("a", "2"), 2, "new version decodes");
        assert_eq!(get("b", "1"), 3);
        assert_eq!(get("a", "1"), 4, "evicted");
        assert_eq!(cache.len(), 2);
    }
}
