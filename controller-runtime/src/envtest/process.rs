//! One control plane process: spawned with its output in a log file, killed on drop.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};

use super::error::{Error, Result, io};

/// How many bytes of a log are read back for an error message.
const LOG_TAIL_BYTES: u64 = 4096;

/// A running `etcd`, `kube-apiserver` or `kube-controller-manager`.
#[derive(Debug)]
pub(crate) struct Process {
    pub(crate) binary: &'static str,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
}

impl Process {
    /// Starts `dir/binary args…`, appending its stdout and stderr to `log`.
    pub(crate) fn spawn(
        dir: &Path,
        binary: &'static str,
        args: Vec<String>,
        log: PathBuf,
    ) -> Result<Self> {
        Self::spawn_program(&dir.join(binary), binary, args, log)
    }

    /// Starts the program at `path` (named `binary` in messages), as [`spawn`](Self::spawn).
    pub(crate) fn spawn_program(
        path: &Path,
        binary: &'static str,
        args: Vec<String>,
        log: PathBuf,
    ) -> Result<Self> {
        let out = File::options()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(io(format!("opening log file {}", log.display())))?;
        let err = out
            .try_clone()
            .map_err(io(format!("opening log file {}", log.display())))?;
        tracing::debug!(binary, ?args, "starting control plane process");
        let child = Command::new(path)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(io(format!("starting {}", path.display())))?;
        Ok(Self {
            binary,
            args,
            log,
            child: Some(child),
        })
    }

    /// The OS process id, while running.
    pub(crate) fn id(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The flags the process was started with, for error messages.
    pub(crate) fn flags(&self) -> String {
        self.args.join(" ")
    }

    /// The exit status if the process has already exited.
    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// The last few kilobytes of the process's log.
    pub(crate) fn log_tail(&self) -> String {
        let read = || -> std::io::Result<String> {
            let mut file = File::open(&self.log)?;
            let len = file.metadata()?.len();
            file.seek(SeekFrom::Start(len.saturating_sub(LOG_TAIL_BYTES)))?;
            let mut buf = Vec::new();
            file.read_to_end(&mut buf)?;
            Ok(String::from_utf8_lossy(&buf).into_owned())
        };
        read().unwrap_or_else(|e| format!("(log {} unreadable: {e})", self.log.display()))
    }

    /// An error saying the process exited during start-up.
    pub(crate) fn exited_error(&self, status: ExitStatus) -> Error {
        Error::Exited {
            binary: self.binary,
            status,
            flags: self.flags(),
            log_tail: self.log_tail(),
        }
    }

    /// Kills the process and waits for it, so that its ports are free when this returns.
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Err(e) = child.kill() {
                tracing::debug!(binary = self.binary, error = %e, "kill failed (already exited?)");
            }
            if let Err(e) = child.wait() {
                tracing::warn!(binary = self.binary, error = %e, "waiting for process failed");
            }
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A loopback TCP port that was free a moment ago.
pub(crate) fn free_port() -> Result<u16> {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(io("binding a free loopback port"))?;
    let port = listener
        .local_addr()
        .map_err(io("reading a bound port"))?
        .port();
    Ok(port)
}
