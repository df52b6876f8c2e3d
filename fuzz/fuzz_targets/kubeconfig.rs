//! Kubeconfig files: any bytes as a kubeconfig loaded through `Config::from_kubeconfig`, then
//! (when it loads) built into a client. Neither panics, and a load error names the file.
//! Inputs that would make kube run a program or read device files are skipped.
#![no_main]

use std::sync::OnceLock;

use ferrokube_client::Config;
use ferrokube_fuzz::{assert_clear, paused_runtime};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // An exec or auth-provider plugin runs a program; a path under /dev or /proc can be
    // endless. Neither belongs in a fuzzer's run.
    let text = String::from_utf8_lossy(data);
    if ["exec", "cmd", "/dev", "/proc", "/sys", "auth-provider"]
        .iter()
        .any(|word| text.contains(word))
    {
        return;
    }
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    let path = DIR
        .get_or_init(|| tempfile::tempdir().expect("a temporary directory"))
        .path()
        .join("kubeconfig");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    paused_runtime().block_on(async {
        match Config::from_kubeconfig(&path, None).await {
            Err(e) => {
                assert_clear(&e, usize::MAX);
                let shown = path.display().to_string();
                assert!(e.to_string().contains(&shown), "{e} does not name {shown}");
            }
            Ok(config) => {
                if let Err(e) = config.build() {
                    assert_clear(&e, usize::MAX);
                }
            }
        }
    });
});
