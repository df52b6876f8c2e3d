//! The node tier's options and the checks made before anything starts: root, the binaries
//! beside `kube-apiserver`, the host tools, and a statically linked busybox.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::super::error::{Error, Result, io};

/// Options of the node tier. By default every tool is looked up in `PATH` (and the usual
/// `sbin` folders), the CNI plugins in `/usr/lib/cni` or `/opt/cni/bin`.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    pub(crate) name: String,
    pub(crate) ip: Option<IpAddr>,
    containerd: Option<PathBuf>,
    runc: Option<PathBuf>,
    ctr: Option<PathBuf>,
    cni_bin_dir: Option<PathBuf>,
    busybox: Option<PathBuf>,
    pub(crate) kubelet_verbosity: u8,
}

impl Default for NodeOptions {
    fn default() -> Self {
        Self {
            name: "envtest-node".to_owned(),
            ip: None,
            containerd: None,
            runc: None,
            ctr: None,
            cni_bin_dir: None,
            busybox: None,
            kubelet_verbosity: 1,
        }
    }
}

impl NodeOptions {
    /// The Node's name (default `envtest-node`).
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The node IP (default: the host's first global IPv4 address; never loopback).
    #[must_use]
    pub fn node_ip(mut self, ip: IpAddr) -> Self {
        self.ip = Some(ip);
        self
    }

    /// The `containerd` binary.
    #[must_use]
    pub fn containerd(mut self, path: impl Into<PathBuf>) -> Self {
        self.containerd = Some(path.into());
        self
    }

    /// The `runc` binary.
    #[must_use]
    pub fn runc(mut self, path: impl Into<PathBuf>) -> Self {
        self.runc = Some(path.into());
        self
    }

    /// The `ctr` binary (imports the node's images).
    #[must_use]
    pub fn ctr(mut self, path: impl Into<PathBuf>) -> Self {
        self.ctr = Some(path.into());
        self
    }

    /// The folder holding the CNI plugins (`bridge`, `host-local`, `loopback`).
    #[must_use]
    pub fn cni_bin_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cni_bin_dir = Some(dir.into());
        self
    }

    /// The statically linked `busybox` the node's images are built from.
    #[must_use]
    pub fn busybox(mut self, path: impl Into<PathBuf>) -> Self {
        self.busybox = Some(path.into());
        self
    }

    /// The kubelet's log verbosity (`--v`, default 1); its log is in the environment's folder.
    #[must_use]
    pub fn kubelet_verbosity(mut self, v: u8) -> Self {
        self.kubelet_verbosity = v;
        self
    }
}

/// The host tools the node runs, resolved.
#[derive(Clone, Debug)]
pub(crate) struct Tools {
    pub(crate) containerd: PathBuf,
    pub(crate) runc: PathBuf,
    pub(crate) ctr: PathBuf,
    pub(crate) cni_bin_dir: PathBuf,
    pub(crate) busybox: PathBuf,
}

/// Binaries the node tier needs in the assets folder, beside `kube-apiserver`.
const NODE_ASSETS: [&str; 3] = ["kubelet", "kube-scheduler", "kube-controller-manager"];

/// Checks what the node tier needs, without changing anything: root, the binaries in
/// `assets`, the host tools and a static busybox.
pub(crate) fn preflight(options: &NodeOptions, assets: &Path) -> Result<Tools> {
    for binary in NODE_ASSETS {
        if !assets.join(binary).is_file() {
            return Err(Error::AssetNotFound {
                binary,
                dir: assets.to_path_buf(),
            });
        }
    }
    if !is_root() {
        return Err(requirement("the node tier runs containers and needs root"));
    }
    let find = |chosen: &Option<PathBuf>, name: &str| -> Result<PathBuf> {
        match chosen {
            Some(path) if path.is_file() => Ok(path.clone()),
            Some(path) => Err(requirement(&format!("{} does not exist", path.display()))),
            None => which(name).ok_or_else(|| {
                requirement(&format!(
                    "{name} not found in PATH (Debian: apt-get install containerd runc \
                     containernetworking-plugins busybox-static)"
                ))
            }),
        }
    };
    let containerd = find(&options.containerd, "containerd")?;
    let shim = "containerd-shim-runc-v2";
    let shim_beside = containerd.parent().is_some_and(|d| d.join(shim).is_file());
    if !shim_beside && which(shim).is_none() {
        return Err(requirement(&format!(
            "{shim} not found beside containerd or in PATH"
        )));
    }
    let tools = Tools {
        runc: find(&options.runc, "runc")?,
        ctr: find(&options.ctr, "ctr")?,
        busybox: find(&options.busybox, "busybox")?,
        cni_bin_dir: match &options.cni_bin_dir {
            Some(dir) => dir.clone(),
            None => ["/usr/lib/cni", "/opt/cni/bin"]
                .iter()
                .map(PathBuf::from)
                .find(|d| d.join("bridge").is_file())
                .ok_or_else(|| {
                    requirement("no CNI plugins in /usr/lib/cni or /opt/cni/bin (Debian: containernetworking-plugins)")
                })?,
        },
        containerd,
    };
    for plugin in ["bridge", "host-local", "loopback"] {
        if !tools.cni_bin_dir.join(plugin).is_file() {
            let dir = tools.cni_bin_dir.display();
            return Err(requirement(&format!(
                "CNI plugin {plugin} missing in {dir}"
            )));
        }
    }
    for tool in ["ip", "umount", "kill"] {
        if which(tool).is_none() {
            return Err(requirement(&format!("{tool} not found in PATH")));
        }
    }
    check_static(&tools.busybox)?;
    Ok(tools)
}

pub(crate) fn requirement(what: &str) -> Error {
    Error::NodeRequirement {
        what: what.to_owned(),
    }
}

/// Whether this process runs as root (`Uid:` in `/proc/self/status`).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    })
}

/// `name` in `PATH` or the usual system folders.
fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(
            [
                "/usr/local/sbin",
                "/usr/local/bin",
                "/usr/sbin",
                "/usr/bin",
                "/sbin",
                "/bin",
            ]
            .map(PathBuf::from),
        )
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Fails unless `path` is an ELF executable without a program interpreter (statically
/// linked): the node's images contain nothing else.
fn check_static(path: &Path) -> Result<()> {
    let bytes = std::fs::read(path).map_err(io(format!("reading {}", path.display())))?;
    match elf_interpreter(&bytes) {
        Some(false) => Ok(()),
        Some(true) => Err(requirement(&format!(
            "{} is dynamically linked; the node's images need a static busybox (Debian: busybox-static)",
            path.display()
        ))),
        None => Err(requirement(&format!(
            "{} is not a little-endian ELF executable",
            path.display()
        ))),
    }
}

/// Whether a little-endian ELF file has a `PT_INTERP` program header; `None` if it is not one.
fn elf_interpreter(elf: &[u8]) -> Option<bool> {
    const PT_INTERP: u32 = 3;
    if elf.get(..4)? != b"\x7fELF" || *elf.get(5)? != 1 {
        return None;
    }
    let u16_at = |at: usize| Some(u16::from_le_bytes(elf.get(at..at + 2)?.try_into().ok()?));
    let u32_at = |at: usize| Some(u32::from_le_bytes(elf.get(at..at + 4)?.try_into().ok()?));
    let u64_at = |at: usize| Some(u64::from_le_bytes(elf.get(at..at + 8)?.try_into().ok()?));
    let (phoff, phentsize, phnum) = match elf.get(4)? {
        1 => (u64::from(u32_at(0x1C)?), u16_at(0x2A)?, u16_at(0x2C)?),
        2 => (u64_at(0x20)?, u16_at(0x36)?, u16_at(0x38)?),
        _ => return None,
    };
    let phoff = usize::try_from(phoff).ok()?;
    let mut interp = false;
    for i in 0..usize::from(phnum) {
        interp |= u32_at(phoff + i * usize::from(phentsize))? == PT_INTERP;
    }
    Some(interp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elf_interpreter_is_found_in_program_headers() {
        // A 64-bit little-endian header with two program headers at 0x40, 56 bytes each.
        let mut elf = vec![0u8; 0x40 + 2 * 56];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2;
        elf[5] = 1;
        elf[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes());
        elf[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        elf[0x38..0x3A].copy_from_slice(&2u16.to_le_bytes());
        elf[0x40..0x44].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        assert_eq!(elf_interpreter(&elf), Some(false));
        elf[0x40 + 56..0x40 + 60].copy_from_slice(&3u32.to_le_bytes()); // PT_INTERP
        assert_eq!(elf_interpreter(&elf), Some(true));
        assert_eq!(elf_interpreter(b"#!/bin/sh\n"), None);
        assert_eq!(elf_interpreter(&elf[..0x50]), None, "truncated headers");
    }

    #[test]
    fn this_test_binary_is_an_elf_file() {
        let me = std::env::current_exe().unwrap();
        assert!(elf_interpreter(&std::fs::read(me).unwrap()).is_some());
    }
}
