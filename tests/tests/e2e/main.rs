//! End-to-end tests against a real kube-apiserver (see the `tests` crate docs).

mod control_plane;
mod core;
mod reflector;

fn main() -> std::process::ExitCode {
    let mut tests = Vec::new();
    tests.extend(core::tests());
    tests.extend(control_plane::tests());
    tests.extend(reflector::tests());
    tests::run(tests)
}
