//! Chaos tests: informers and controllers against a real control plane while the network and
//! the API server misbehave (see RELIABILITY.md). Every test name contains "chaos", so
//! `cargo test -p tests --release -- chaos` runs them all.

mod controller;
mod election;
mod faults;
mod informers;
mod slow_consumers;
mod throttling;
mod widgets;

fn main() -> std::process::ExitCode {
    let mut tests = Vec::new();
    tests.extend(informers::tests());
    tests.extend(controller::tests());
    tests.extend(throttling::tests());
    tests.extend(election::tests());
    tests.extend(slow_consumers::tests());
    tests::run_as("chaos", tests)
}
