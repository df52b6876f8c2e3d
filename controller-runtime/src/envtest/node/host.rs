//! What the node tier changes on the host, and how each change is undone: kernel settings the
//! kubelet and the CNI bridge set, the node's cgroup tree, mounts under the environment's
//! folder, processes that still name it, and files the kubelet and CNI leave outside it.
//!
//! Everything here is best effort and logs what it could not undo: teardown goes on.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::super::error::{Result, io};

/// Kernel settings (under `/proc/sys`) the kubelet (`protectKernelDefaults: false`) or the CNI
/// bridge (`isGateway`) may change.
const KERNEL_SETTINGS: [&str; 7] = [
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
    "net/ipv4/ip_forward",
];

/// Where the kubelet links container logs, whatever its `podLogsDir`.
const CONTAINER_LOG_LINKS: &str = "/var/log/containers";
/// Where libcni caches results, not configurable in containerd 1.6.
const CNI_RESULTS: &str = "/var/lib/cni/results";
/// Where containerd 1.6's shims put their sockets, whatever containerd's state folder.
pub(crate) const SHIM_SOCKETS: &str = "/run/containerd/s";

// === impl KernelSettings ===

/// The values of [`KERNEL_SETTINGS`] before the node started.
#[derive(Debug)]
pub(crate) struct KernelSettings(Vec<(PathBuf, String)>);

impl KernelSettings {
    pub(crate) fn record() -> Self {
        Self(
            KERNEL_SETTINGS
                .iter()
                .map(|name| Path::new("/proc/sys").join(name))
                .filter_map(|path| {
                    let value = std::fs::read_to_string(&path).ok()?;
                    Some((path, value.trim().to_owned()))
                })
                .collect(),
        )
    }

    /// Writes back every value that changed.
    pub(crate) fn restore(&self) {
        for (path, before) in &self.0 {
            let now = std::fs::read_to_string(path).unwrap_or_default();
            if now.trim() != before
                && let Err(e) = std::fs::write(path, before)
            {
                tracing::warn!(path = %path.display(), error = %e, "envtest node: restoring a kernel setting failed");
            }
        }
    }
}

// === impl CgroupTree ===

/// The node's cgroup root (the kubelet's `cgroupRoot`), created in every mounted hierarchy.
#[derive(Debug)]
pub(crate) struct CgroupTree {
    dirs: Vec<PathBuf>,
}

impl CgroupTree {
    /// Creates `/<name>` in each cgroup hierarchy (cgroup v1 and v2 mounts alike); a cpuset
    /// copies its parent's CPUs and memory nodes, or nothing could join it.
    pub(crate) fn create(name: &str) -> Result<Self> {
        let mut tree = Self { dirs: Vec::new() };
        for hierarchy in cgroup_hierarchies() {
            let dir = hierarchy.join(name);
            std::fs::create_dir(&dir).map_err(io(format!("creating cgroup {}", dir.display())))?;
            tree.dirs.push(dir.clone());
            for file in ["cpuset.cpus", "cpuset.mems"] {
                let parent = hierarchy.join(file);
                if parent.exists() && !hierarchy.join("cgroup.subtree_control").exists() {
                    let value = std::fs::read_to_string(&parent)
                        .map_err(io(format!("reading {}", parent.display())))?;
                    std::fs::write(dir.join(file), value.trim())
                        .map_err(io(format!("writing {}", dir.join(file).display())))?;
                }
            }
        }
        Ok(tree)
    }

    /// Every process in the tree.
    pub(crate) fn processes(&self) -> BTreeSet<u32> {
        let mut pids = BTreeSet::new();
        for dir in &self.dirs {
            for sub in subdirs_deepest_first(dir) {
                if let Ok(procs) = std::fs::read_to_string(sub.join("cgroup.procs")) {
                    pids.extend(procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
                }
            }
        }
        pids
    }

    /// Removes the tree, deepest first, waiting up to `patience` for killed processes to go.
    pub(crate) fn remove(&self, patience: Duration) {
        let start = Instant::now();
        loop {
            let mut left = Vec::new();
            for dir in &self.dirs {
                for sub in subdirs_deepest_first(dir) {
                    if let Err(e) = std::fs::remove_dir(&sub)
                        && e.kind() != std::io::ErrorKind::NotFound
                    {
                        left.push((sub, e));
                    }
                }
            }
            if left.is_empty() {
                return;
            }
            if start.elapsed() > patience {
                for (dir, e) in left {
                    tracing::warn!(cgroup = %dir.display(), error = %e, "envtest node: a cgroup is left behind");
                }
                return;
            }
            kill(&self.processes());
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The mount points of cgroup hierarchies.
fn cgroup_hierarchies() -> Vec<PathBuf> {
    mount_table()
        .into_iter()
        .filter(|m| m.fs_type == "cgroup" || m.fs_type == "cgroup2")
        .map(|m| m.point)
        .collect()
}

/// `dir` and every folder below it, children before their parents.
fn subdirs_deepest_first(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Ok(entries) = std::fs::read_dir(&d) {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(entry.path());
                }
            }
        }
        out.push(d);
    }
    out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    out.into_iter().filter(|p| p.exists()).collect()
}

// === mounts ===

struct Mount {
    point: PathBuf,
    fs_type: String,
}

/// `/proc/self/mountinfo`: mount point (field 5) and file system type (after the ` - `).
fn mount_table() -> Vec<Mount> {
    let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    parse_mountinfo(&table)
}

fn parse_mountinfo(table: &str) -> Vec<Mount> {
    table
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let point = left.split(' ').nth(4)?;
            let fs_type = right.split(' ').next()?;
            Some(Mount {
                point: PathBuf::from(unescape(point)),
                fs_type: fs_type.to_owned(),
            })
        })
        .collect()
}

/// Undoes mountinfo's octal escapes (`\040` for a space, …).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            let s = std::str::from_utf8(d).ok()?;
            u8::from_str_radix(s, 8).ok()
        });
        match (bytes[i], octal) {
            (b'\\', Some(b)) => {
                out.push(b);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Mount points at or below `dir`.
pub(crate) fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    mount_table()
        .into_iter()
        .map(|m| m.point)
        .filter(|p| p.starts_with(dir))
        .collect()
}

/// Unmounts (lazily) everything mounted at or below `dir`, deepest first, and says what is
/// still mounted.
pub(crate) fn unmount_all(dir: &Path) -> Vec<PathBuf> {
    for _ in 0..8 {
        let mut points = mounts_under(dir);
        if points.is_empty() {
            break;
        }
        points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for point in points {
            match Command::new("umount").arg("--lazy").arg(&point).output() {
                Ok(out) if out.status.success() => {}
                Ok(out) => tracing::debug!(
                    mount = %point.display(),
                    stderr = %String::from_utf8_lossy(&out.stderr).trim(),
                    "envtest node: umount failed"
                ),
                Err(e) => tracing::warn!(error = %e, "envtest node: running umount failed"),
            }
        }
    }
    mounts_under(dir)
}

// === processes ===

/// Processes whose command line mentions `needle` (e.g. the environment's folder), except
/// this one.
pub(crate) fn processes_mentioning(needle: &str) -> BTreeSet<u32> {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return BTreeSet::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmd| cmd.windows(needle.len()).any(|w| w == needle.as_bytes()))
        })
        .collect()
}

/// Whether process `pid` exists and is not a zombie (`/proc/<pid>/stat`).
pub(crate) fn is_running(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the command name, which is in parentheses and may hold spaces.
    let state = stat
        .rsplit_once(") ")
        .and_then(|(_, rest)| rest.chars().next());
    !matches!(state, None | Some('Z' | 'X'))
}

/// Sends SIGKILL to `pids` (std can only kill its own children).
pub(crate) fn kill(pids: &BTreeSet<u32>) {
    if pids.is_empty() {
        return;
    }
    let status = Command::new("kill")
        .arg("-9")
        .args(pids.iter().map(u32::to_string))
        .stderr(std::process::Stdio::null())
        .status();
    if let Err(e) = status {
        tracing::warn!(error = %e, "envtest node: running kill failed");
    }
}

// === files outside the environment's folder ===

/// Folders the node's processes create outside the environment's folder whatever their
/// configuration, and the files they leave in them.
const OUTSIDE_DIRS: [(&str, &[&str]); 3] = [
    // The device plugin socket path is fixed in the kubelet.
    (
        "/var/lib/kubelet/device-plugins",
        &["kubelet.sock", "kubelet_internal_checkpoint"],
    ),
    // containerd 1.6's shims put their sockets here, whatever containerd's state folder.
    (SHIM_SOCKETS, &[]),
    // libcni's result cache (`<network>-<container>-<interface>`).
    (CNI_RESULTS, &[]),
];

/// Which of the folders in [`OUTSIDE_DIRS`] (and their parents) existed before the node
/// started: those are kept.
#[derive(Debug)]
pub(crate) struct OutsideFiles {
    existed: Vec<PathBuf>,
}

impl OutsideFiles {
    pub(crate) fn record() -> Self {
        let mut existed = Vec::new();
        let dirs = OUTSIDE_DIRS
            .iter()
            .map(|(dir, _)| *dir)
            .chain([CONTAINER_LOG_LINKS]);
        for dir in dirs {
            for ancestor in Path::new(dir).ancestors() {
                if ancestor.exists() && !existed.iter().any(|e| e == ancestor) {
                    existed.push(ancestor.to_path_buf());
                }
            }
        }
        Self { existed }
    }

    /// Removes container log links into `dir`, cached CNI results of `network` or naming one
    /// of the node's container `ids` (containerd's loopback network), and the shim sockets
    /// named `shim_sockets`; then, in the folders the node created, the kubelet's fixed
    /// files, and the folders once empty.
    pub(crate) fn remove(
        &self,
        dir: &Path,
        network: &str,
        ids: &BTreeSet<String>,
        shim_sockets: &BTreeSet<String>,
    ) {
        if let Ok(links) = std::fs::read_dir(CONTAINER_LOG_LINKS) {
            for link in links.flatten() {
                if std::fs::read_link(link.path()).is_ok_and(|t| t.starts_with(dir)) {
                    let _ = std::fs::remove_file(link.path());
                }
            }
        }
        if let Ok(results) = std::fs::read_dir(CNI_RESULTS) {
            for result in results.flatten() {
                let name = result.file_name().to_string_lossy().into_owned();
                let ours = name.starts_with(&format!("{network}-"))
                    || ids.iter().any(|id| name.contains(&format!("-{id}-")));
                if ours {
                    let _ = std::fs::remove_file(result.path());
                }
            }
        }
        for socket in shim_sockets {
            let _ = std::fs::remove_file(Path::new(SHIM_SOCKETS).join(socket));
        }
        let created = |p: &Path| !self.existed.iter().any(|e| e == p);
        for (folder, files) in OUTSIDE_DIRS {
            let folder = Path::new(folder);
            if created(folder) {
                for file in files {
                    let _ = std::fs::remove_file(folder.join(file));
                }
            }
        }
        let dirs = OUTSIDE_DIRS
            .iter()
            .map(|(d, _)| *d)
            .chain([CONTAINER_LOG_LINKS]);
        for folder in dirs {
            // Deepest first; `remove_dir` leaves a folder that is not empty.
            for ancestor in Path::new(folder).ancestors().filter(|a| created(a)) {
                if std::fs::remove_dir(ancestor).is_err() {
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_fields_and_escapes() {
        let table = "36 35 98:0 /mnt1 /tmp/a\\040b rw,noatime master:1 - ext3 /dev/root rw\n\
                     40 30 0:35 / /sys/fs/cgroup/cpu rw shared:9 - cgroup cgroup rw,cpu\n\
                     garbage\n";
        let mounts = parse_mountinfo(table);
        assert_eq!(mounts.len(), 2);
        assert_eq!(mounts[0].point, Path::new("/tmp/a b"));
        assert_eq!(mounts[0].fs_type, "ext3");
        assert_eq!(mounts[1].point, Path::new("/sys/fs/cgroup/cpu"));
        assert_eq!(mounts[1].fs_type, "cgroup");
        assert_eq!(unescape("x\\134y\\0"), "x\\y\\0");
    }

    #[test]
    fn subdirs_come_children_first() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b/c")).unwrap();
        std::fs::create_dir_all(dir.path().join("d")).unwrap();
        std::fs::write(dir.path().join("a/file"), b"").unwrap();
        let order = subdirs_deepest_first(dir.path());
        assert_eq!(order.len(), 5);
        let pos = |p: &str| order.iter().position(|o| o == &dir.path().join(p)).unwrap();
        assert!(pos("a/b/c") < pos("a/b") && pos("a/b") < pos("a"));
        assert_eq!(order.last().unwrap(), dir.path());
    }

    #[test]
    fn this_process_runs_and_a_reaped_child_does_not() {
        assert!(is_running(std::process::id()));
        let mut child = Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(
            !is_running(pid)
                || std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| !c.contains("true")),
            "pid reused by another process"
        );
    }

    #[test]
    fn processes_mentioning_finds_a_child_by_its_arguments() {
        let marker = format!("ferrokube-marker-{}", std::process::id());
        let mut child = Command::new("sh")
            .args(["-c", "sleep 30; true", &marker])
            .spawn()
            .unwrap();
        // Until the child has exec'd, its command line is still ours: look until it shows.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let found = loop {
            let found = processes_mentioning(&marker);
            if found.contains(&child.id()) || std::time::Instant::now() > deadline {
                break found;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        kill(&found);
        let status = child.wait().unwrap();
        assert!(
            found.contains(&child.id()),
            "{found:?} lacks {}",
            child.id()
        );
        assert!(!status.success(), "killed, not exited");
        assert!(!found.contains(&std::process::id()));
    }
}
