//! End-to-end tests on the node tier: a kubelet and containerd beside the control plane, so
//! pods really run (see `tests::run_node`). Skipped, with one line saying why, where the node
//! cannot run (no kubelet binary, not root, no containerd…).

mod exec;
mod fixtures;
mod logs;
mod pods;
mod portforward;
mod proxy;

fn main() -> std::process::ExitCode {
    let mut tests = Vec::new();
    tests.extend(pods::tests());
    tests.extend(logs::tests());
    tests.extend(exec::tests());
    tests.extend(portforward::tests());
    tests.extend(proxy::tests());
    tests::run_node(tests)
}
