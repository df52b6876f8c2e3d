//! End-to-end tests against a real kube-apiserver (see the `tests` crate docs).

mod client_verbs;
mod control_plane;
mod controllerutil;
mod core;
mod discovery;
mod events;
mod examples;
mod fixtures;
mod gadgets;
mod informer;
mod leader_election;
mod reflector;
mod runtime;
mod runtime_election;
mod security;
mod webhooks;

fn main() -> std::process::ExitCode {
    let mut tests = Vec::new();
    tests.extend(core::tests());
    tests.extend(client_verbs::tests());
    tests.extend(discovery::tests());
    tests.extend(control_plane::tests());
    tests.extend(reflector::tests());
    tests.extend(informer::tests());
    tests.extend(informer::compact_tests());
    tests.extend(informer::factory_tests());
    tests.extend(leader_election::tests());
    tests.extend(events::tests());
    tests.extend(controllerutil::tests());
    tests.extend(runtime::tests());
    tests.extend(runtime_election::tests());
    tests.extend(examples::tests());
    tests.extend(webhooks::tests());
    tests.extend(security::tests());
    tests::run(tests)
}
