//! Images without a registry: an OCI image-layout tarball built from a static busybox, holding
//! two images over the same root filesystem layer: [`BUSYBOX_IMAGE`] (command `sh`) and
//! [`PAUSE_IMAGE`] (sleeps; the pod sandbox image).

use std::path::Path;

use ring::digest::{SHA256, digest};
use serde_json::json;

use super::super::error::{Result, io};

/// The busybox image every node tier has (pull it with `imagePullPolicy: Never`).
pub const BUSYBOX_IMAGE: &str = "ferrokube.local/busybox:latest";
/// The sandbox ("pause") image of the node tier: the busybox root filesystem, sleeping.
pub const PAUSE_IMAGE: &str = "ferrokube.local/pause:latest";

const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";
const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
const PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A blob of the image layout: its bytes and `sha256:` digest.
struct Blob {
    digest: String,
    bytes: Vec<u8>,
}

impl Blob {
    fn new(bytes: Vec<u8>) -> Self {
        let hex: String = digest(&SHA256, &bytes)
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Self {
            digest: format!("sha256:{hex}"),
            bytes,
        }
    }

    fn descriptor(&self, media_type: &str) -> serde_json::Value {
        json!({"mediaType": media_type, "digest": self.digest, "size": self.bytes.len()})
    }
}

/// Builds the image-layout tarball from the static busybox at `busybox`, whose applets are
/// `applets` (the output of `busybox --list`).
pub(crate) fn build(busybox: &Path, applets: &[String]) -> Result<Vec<u8>> {
    let binary = std::fs::read(busybox).map_err(io(format!("reading {}", busybox.display())))?;
    let layer = Blob::new(root_filesystem(binary, applets));
    let (os, architecture) = ("linux", oci_architecture());
    let mut blobs = vec![];
    let mut manifests = vec![];
    for (name, cmd) in [
        (BUSYBOX_IMAGE, json!(["sh"])),
        (PAUSE_IMAGE, json!(["/bin/sleep", "infinity"])),
    ] {
        let config = Blob::new(
            json!({
                "architecture": architecture,
                "os": os,
                "config": {"Env": [PATH], "Cmd": cmd, "WorkingDir": "/"},
                "rootfs": {"type": "layers", "diff_ids": [layer.digest]},
            })
            .to_string()
            .into_bytes(),
        );
        let manifest = Blob::new(
            json!({
                "schemaVersion": 2,
                "mediaType": MANIFEST_MEDIA_TYPE,
                "config": config.descriptor(CONFIG_MEDIA_TYPE),
                "layers": [layer.descriptor(LAYER_MEDIA_TYPE)],
            })
            .to_string()
            .into_bytes(),
        );
        let mut descriptor = manifest.descriptor(MANIFEST_MEDIA_TYPE);
        descriptor["platform"] = json!({"architecture": architecture, "os": os});
        descriptor["annotations"] = json!({
            "io.containerd.image.name": name,
            "org.opencontainers.image.ref.name": name.rsplit_once(':').map_or("latest", |(_, tag)| tag),
        });
        manifests.push(descriptor);
        blobs.push(config);
        blobs.push(manifest);
    }
    blobs.push(layer);
    let index = json!({"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": manifests});

    let mut tar = TarWriter::default();
    tar.file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#, 0o644);
    tar.file("index.json", index.to_string().as_bytes(), 0o644);
    tar.dir("blobs", 0o755);
    tar.dir("blobs/sha256", 0o755);
    for blob in &blobs {
        let hex = blob.digest.trim_start_matches("sha256:");
        tar.file(&format!("blobs/sha256/{hex}"), &blob.bytes, 0o644);
    }
    Ok(tar.finish())
}

/// The architecture name OCI uses for this machine's.
fn oci_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// The layer: `/bin/busybox`, a symlink per applet, the usual top-level folders and a minimal
/// `/etc/passwd` and `/etc/group`.
fn root_filesystem(busybox: Vec<u8>, applets: &[String]) -> Vec<u8> {
    let mut tar = TarWriter::default();
    for dir in [
        "bin", "dev", "etc", "proc", "root", "sys", "usr", "var", "var/www",
    ] {
        tar.dir(dir, 0o755);
    }
    tar.dir("tmp", 0o1777);
    tar.file("bin/busybox", &busybox, 0o755);
    for applet in applets {
        let valid = !applet.is_empty()
            && applet != "busybox"
            && applet.len() < 90
            && applet.bytes().all(|b| b.is_ascii_graphic() && b != b'/');
        if valid {
            tar.symlink(&format!("bin/{applet}"), "busybox");
        }
    }
    tar.file(
        "etc/passwd",
        b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
        0o644,
    );
    tar.file("etc/group", b"root:x:0:\nnobody:x:65534:\n", 0o644);
    tar.finish()
}

// === impl TarWriter ===

/// A minimal ustar writer: folders, regular files and symlinks, owned by root, mtime 0.
#[derive(Default)]
struct TarWriter {
    out: Vec<u8>,
}

impl TarWriter {
    fn dir(&mut self, path: &str, mode: u32) {
        self.header(&format!("{path}/"), mode, 0, b'5', "");
    }

    fn file(&mut self, path: &str, contents: &[u8], mode: u32) {
        self.header(path, mode, contents.len() as u64, b'0', "");
        self.out.extend_from_slice(contents);
        let padding = (512 - contents.len() % 512) % 512;
        self.out.resize(self.out.len() + padding, 0);
    }

    fn symlink(&mut self, path: &str, target: &str) {
        self.header(path, 0o777, 0, b'2', target);
    }

    /// Writes one 512-byte header. Names are short here (at most 100 bytes).
    fn header(&mut self, path: &str, mode: u32, size: u64, kind: u8, link: &str) {
        let mut h = [0u8; 512];
        put(&mut h[0..100], path.as_bytes());
        put(&mut h[100..108], format!("{mode:07o}").as_bytes());
        put(&mut h[108..116], b"0000000");
        put(&mut h[116..124], b"0000000");
        put(&mut h[124..136], format!("{size:011o}").as_bytes());
        put(&mut h[136..148], b"00000000000");
        h[148..156].fill(b' ');
        h[156] = kind;
        put(&mut h[157..257], link.as_bytes());
        put(&mut h[257..263], b"ustar\0");
        put(&mut h[263..265], b"00");
        put(&mut h[265..297], b"root");
        put(&mut h[297..329], b"root");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        put(&mut h[148..156], format!("{sum:06o}\0 ").as_bytes());
        self.out.extend_from_slice(&h);
    }

    fn finish(mut self) -> Vec<u8> {
        self.out.resize(self.out.len() + 1024, 0);
        self.out
    }
}

fn put(field: &mut [u8], value: &[u8]) {
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads back (path, type, link, contents) from a tarball written by `TarWriter`.
    fn entries(tar: &[u8]) -> Vec<(String, u8, String, Vec<u8>)> {
        let field = |b: &[u8]| {
            let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
            String::from_utf8(b[..end].to_vec()).unwrap()
        };
        let mut out = vec![];
        let mut at = 0;
        while at + 512 <= tar.len() && tar[at] != 0 {
            let h = &tar[at..at + 512];
            let mut check = h.to_vec();
            check[148..156].fill(b' ');
            let sum: u32 = check.iter().map(|&b| u32::from(b)).sum();
            let stored = u32::from_str_radix(field(&h[148..154]).trim(), 8).unwrap();
            assert_eq!(sum, stored, "checksum of {}", field(&h[0..100]));
            let size = usize::from_str_radix(field(&h[124..135]).trim(), 8).unwrap();
            let body = tar[at + 512..at + 512 + size].to_vec();
            out.push((field(&h[0..100]), h[156], field(&h[157..257]), body));
            at += 512 + size.div_ceil(512) * 512;
        }
        assert!(
            tar[at..].iter().all(|&b| b == 0),
            "two zero blocks end the archive"
        );
        assert_eq!(tar.len() - at, 1024);
        out
    }

    #[test]
    fn tar_entries_round_trip() {
        let mut tar = TarWriter::default();
        tar.dir("bin", 0o755);
        tar.file("bin/x", b"hello", 0o755);
        tar.symlink("bin/sh", "x");
        let out = tar.finish();
        assert_eq!(out.len() % 512, 0);
        let got = entries(&out);
        assert_eq!(got.len(), 3);
        assert_eq!((got[0].0.as_str(), got[0].1), ("bin/", b'5'));
        assert_eq!((got[1].0.as_str(), got[1].1), ("bin/x", b'0'));
        assert_eq!(got[1].3, b"hello");
        assert_eq!(
            (got[2].0.as_str(), got[2].1, got[2].2.as_str()),
            ("bin/sh", b'2', "x")
        );
    }

    #[test]
    fn layout_names_both_images_and_blobs_match_their_digests() {
        let dir = tempfile::tempdir().unwrap();
        let busybox = dir.path().join("busybox");
        std::fs::write(&busybox, b"not really busybox").unwrap();
        let applets = vec![
            "sh".to_owned(),
            "sleep".to_owned(),
            "busybox".to_owned(),
            "a/b".to_owned(),
        ];
        let archive = build(&busybox, &applets).unwrap();
        let files = entries(&archive);
        let get = |name: &str| {
            files
                .iter()
                .find(|f| f.0 == name)
                .map(|f| f.3.clone())
                .unwrap_or_else(|| panic!("{name} missing"))
        };
        let blob = |digest: &str| {
            get(&format!(
                "blobs/sha256/{}",
                digest.trim_start_matches("sha256:")
            ))
        };
        let blobs: Vec<_> = files
            .iter()
            .filter(|f| f.0.starts_with("blobs/sha256/") && !f.0.ends_with('/'))
            .collect();
        assert_eq!(blobs.len(), 5, "a layer, two configs, two manifests");
        for (path, kind, _, body) in blobs {
            assert_eq!(*kind, b'0');
            assert_eq!(
                path.trim_start_matches("blobs/sha256/"),
                Blob::new(body.clone()).digest.trim_start_matches("sha256:")
            );
        }
        let index: serde_json::Value = serde_json::from_slice(&get("index.json")).unwrap();
        let names: Vec<&str> = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                m["annotations"]["io.containerd.image.name"]
                    .as_str()
                    .unwrap()
            })
            .collect();
        assert_eq!(names, [BUSYBOX_IMAGE, PAUSE_IMAGE]);
        let pause = &index["manifests"][1];
        let manifest: serde_json::Value =
            serde_json::from_slice(&blob(pause["digest"].as_str().unwrap())).unwrap();
        let config: serde_json::Value =
            serde_json::from_slice(&blob(manifest["config"]["digest"].as_str().unwrap())).unwrap();
        assert_eq!(config["config"]["Cmd"], json!(["/bin/sleep", "infinity"]));
        let layer_digest = manifest["layers"][0]["digest"].as_str().unwrap();
        assert_eq!(config["rootfs"]["diff_ids"][0], layer_digest);
        let layer = entries(&blob(layer_digest));
        let paths: Vec<&str> = layer.iter().map(|e| e.0.as_str()).collect();
        assert!(paths.contains(&"bin/busybox"));
        assert!(paths.contains(&"bin/sh") && paths.contains(&"bin/sleep"));
        assert!(
            !paths.contains(&"bin/a/b"),
            "applet names with a slash are skipped"
        );
        assert_eq!(
            layer.iter().filter(|e| e.0 == "bin/busybox").count(),
            1,
            "no self-link"
        );
        let bin = layer.iter().find(|e| e.0 == "bin/busybox").unwrap();
        assert_eq!(bin.3, b"not really busybox");
    }
}
