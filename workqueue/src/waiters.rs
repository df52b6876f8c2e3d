//! Parking for workers blocked in `get`, under the queue's own lock.
//!
//! The list of parked getters lives inside the queue state, behind the same mutex as the keys, so
//! checking for a key and parking is one critical section (no lost wake-ups) and handing a key to
//! a parked getter costs no extra atomic operation: the producer pops one waiter while it holds
//! the lock anyway, and wakes it after unlocking. Each parked getter is woken at most once per
//! key; a woken getter that finds nothing (another worker was faster) parks again, and one that is
//! cancelled after being woken passes the wake-up on, so keys are never stranded.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::task::{Poll, Waker};

use parking_lot::Mutex;

/// The parked getters of one queue, in FIFO order.
#[derive(Debug, Default)]
pub(crate) struct WaitList {
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Parked getters not yet woken, oldest first.
    order: VecDeque<u32>,
}

#[derive(Debug)]
enum Slot {
    Vacant,
    Parked(Waker),
    Woken,
}

impl WaitList {
    /// Whether no getter is parked (and not yet woken).
    pub(crate) fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Wakes the longest-parked getter, if any: returns its waker, to call after unlocking.
    pub(crate) fn notify_one(&mut self) -> Option<Waker> {
        while let Some(id) = self.order.pop_front() {
            let slot = &mut self.slots[id as usize];
            if let Slot::Parked(_) = slot
                && let Slot::Parked(waker) = std::mem::replace(slot, Slot::Woken)
            {
                return Some(waker);
            }
        }
        None
    }

    /// Wakes every parked getter.
    pub(crate) fn notify_all(&mut self) -> Wakers {
        let mut wakers = Vec::with_capacity(self.order.len());
        while let Some(waker) = self.notify_one() {
            wakers.push(waker);
        }
        Wakers(wakers)
    }

    /// Parks the getter holding `id` (allocating its slot on first use), or refreshes its waker.
    fn park(&mut self, id: &mut Option<u32>, waker: &Waker) {
        match *id {
            Some(i) => match &mut self.slots[i as usize] {
                Slot::Parked(old) => {
                    if !old.will_wake(waker) {
                        old.clone_from(waker);
                    }
                }
                slot => {
                    *slot = Slot::Parked(waker.clone());
                    self.order.push_back(i);
                }
            },
            None => {
                let i = match self.free.pop() {
                    Some(i) => {
                        self.slots[i as usize] = Slot::Parked(waker.clone());
                        i
                    }
                    None => {
                        let i = u32::try_from(self.slots.len()).unwrap_or(u32::MAX);
                        self.slots.push(Slot::Parked(waker.clone()));
                        i
                    }
                };
                self.order.push_back(i);
                *id = Some(i);
            }
        }
    }

    /// Releases the slot of a getter that is done waiting. If it was woken but `cancelled`
    /// (it will not look at the queue), its wake-up goes to the next parked getter.
    fn release(&mut self, id: u32, cancelled: bool) -> Option<Waker> {
        let slot = std::mem::replace(&mut self.slots[id as usize], Slot::Vacant);
        self.free.push(id);
        match slot {
            Slot::Parked(_) => {
                if let Some(position) = self.order.iter().position(|&other| other == id) {
                    self.order.remove(position);
                }
                None
            }
            Slot::Woken if cancelled => self.notify_one(),
            Slot::Woken | Slot::Vacant => None,
        }
    }
}

/// Wakers collected under a lock, woken when dropped (after the lock is released).
#[derive(Debug, Default)]
pub(crate) struct Wakers(Vec<Waker>);

impl Extend<Waker> for Wakers {
    fn extend<I: IntoIterator<Item = Waker>>(&mut self, wakers: I) {
        self.0.extend(wakers);
    }
}

impl Drop for Wakers {
    fn drop(&mut self) {
        for waker in self.0.drain(..) {
            waker.wake();
        }
    }
}

/// A queue state that has a [`WaitList`].
pub(crate) trait Parking {
    fn wait_list(&mut self) -> &mut WaitList;
}

/// Waits until `attempt`, called under the lock, returns a value.
///
/// The getter parks in the state's [`WaitList`] in the same critical section in which `attempt`
/// found nothing. Dropping the returned future releases its place (passing on a wake-up it
/// received but did not use).
pub(crate) async fn wait<S: Parking, T>(
    mutex: &Mutex<S>,
    mut attempt: impl FnMut(&mut S) -> Option<T>,
) -> T {
    let mut parked = Parked { mutex, id: None };
    poll_fn(|cx| {
        let mut state = mutex.lock();
        if let Some(value) = attempt(&mut state) {
            if let Some(id) = parked.id.take() {
                // Not cancelled: a wake-up it got was used by this look at the queue.
                let _ = state.wait_list().release(id, false);
            }
            return Poll::Ready(value);
        }
        state.wait_list().park(&mut parked.id, cx.waker());
        Poll::Pending
    })
    .await
}

/// A getter's place in a [`WaitList`]; dropping it while parked releases the place.
struct Parked<'a, S: Parking> {
    mutex: &'a Mutex<S>,
    id: Option<u32>,
}

impl<S: Parking> Drop for Parked<'_, S> {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            let waker = self.mutex.lock().wait_list().release(id, true);
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    use super::*;

    struct Counter(AtomicUsize);

    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn waker() -> (Arc<Counter>, Waker) {
        let counter = Arc::new(Counter(AtomicUsize::new(0)));
        (counter.clone(), Waker::from(counter))
    }

    #[test]
    fn wakes_in_fifo_order_once_each() {
        let mut list = WaitList::default();
        let (a_count, a) = waker();
        let (b_count, b) = waker();
        let (mut id_a, mut id_b) = (None, None);
        list.park(&mut id_a, &a);
        list.park(&mut id_b, &b);
        list.park(&mut id_a, &a); // re-poll while parked: no second place
        list.notify_one().unwrap().wake();
        assert_eq!(a_count.0.load(Ordering::SeqCst), 1);
        list.notify_one().unwrap().wake();
        assert_eq!(b_count.0.load(Ordering::SeqCst), 1);
        assert!(list.notify_one().is_none());
        assert!(list.is_empty());
    }

    #[test]
    fn cancelled_wakeup_is_passed_on() {
        let mut list = WaitList::default();
        let (_, a) = waker();
        let (b_count, b) = waker();
        let (mut id_a, mut id_b) = (None, None);
        list.park(&mut id_a, &a);
        list.park(&mut id_b, &b);
        drop(list.notify_one()); // a is woken...
        let forwarded = list.release(id_a.unwrap(), true); // ...but cancelled
        forwarded.unwrap().wake();
        assert_eq!(b_count.0.load(Ordering::SeqCst), 1);
        // Released places are reused, and a parked release leaves the order.
        let (_, c) = waker();
        let mut id_c = None;
        list.park(&mut id_c, &c);
        assert_eq!(id_c, id_a);
        assert!(list.release(id_c.unwrap(), true).is_none());
        assert!(list.is_empty());
    }

    #[test]
    fn woken_getter_parks_again() {
        let mut list = WaitList::default();
        let (count, a) = waker();
        let mut id = None;
        list.park(&mut id, &a);
        list.notify_one().unwrap().wake();
        assert!(list.is_empty());
        list.park(&mut id, &a);
        assert!(!list.is_empty());
        drop(list.notify_all());
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
    }
}
