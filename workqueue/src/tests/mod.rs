//! Behaviour tests across the queue types, and the property tests.

mod delaying;
mod metrics;
mod priority;
mod proptests;
mod queue;
