//! Exec and attach: [`Api::exec`] and [`Api::attach`] on the `pods/exec` and `pods/attach`
//! subresources, over the websocket that kube's [`Client::connect`](kube::Client::connect)
//! opens (channel protocol `v5.channel.k8s.io`, falling back to `v4`).
//!
//! ```no_run
//! use ferrokube_client::{Client, ExecOptions};
//! use k8s_openapi::api::core::v1::Pod;
//! use tokio::io::AsyncReadExt;
//!
//! # async fn demo(client: Client) -> Result<(), Box<dyn std::error::Error>> {
//! let pods = client.namespaced::<Pod>("default");
//! let mut process = pods.exec("web-0", ["cat", "/etc/hostname"], &ExecOptions::default()).await?;
//! let mut out = String::new();
//! if let Some(mut stdout) = process.stdout() {
//!     stdout.read_to_string(&mut out).await?;
//! }
//! let status = process.join().await?;
//! println!("{out} (exit code {:?})", status.as_ref().and_then(ferrokube_client::exec::exit_code));
//! # Ok(()) }
//! ```

use std::time::Duration;

use bytes::Bytes;
use futures::{Sink, SinkExt, Stream, StreamExt};
use http::Method;
use k8s_openapi::api::core::v1::Pod;
use tokio::io::{AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_util::io::ReaderStream;

pub use kube::api::TerminalSize;

use crate::api::Api;
use crate::error::{ApiError, Error, Result, Status};
use crate::request::Request;

/// Channel numbers of the remote command protocol (`k8s.io/apimachinery/pkg/util/remotecommand`).
const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const STATUS: u8 = 3;
const RESIZE: u8 = 4;
/// v5 only: "this channel reached end of file".
const CLOSE: u8 = 255;

/// Bytes buffered per stream before the connection waits for the reader.
const BUFFER: usize = 64 * 1024;
/// An idle connection is kept alive with a ping this often.
const PING_EVERY: Duration = Duration::from_secs(60);

/// `corev1.PodAttachOptions` (and `PodExecOptions` without the command): which container and
/// which standard streams to connect. By default stdout and stderr, as `kubectl exec`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[doc(alias = "PodAttachOptions")]
#[doc(alias = "PodExecOptions")]
#[must_use]
pub struct AttachOptions {
    /// The container; may be omitted when the pod has a single container.
    pub container: Option<String>,
    /// Connect the process's standard input.
    pub stdin: bool,
    /// Connect its standard output.
    pub stdout: bool,
    /// Connect its standard error (must be off with `tty`: a terminal merges both).
    pub stderr: bool,
    /// Allocate a terminal.
    pub tty: bool,
}

/// Options of [`Api::exec`]: the same as [`AttachOptions`].
pub type ExecOptions = AttachOptions;

impl Default for AttachOptions {
    fn default() -> Self {
        Self {
            container: None,
            stdin: false,
            stdout: true,
            stderr: true,
            tty: false,
        }
    }
}

impl AttachOptions {
    /// Sets the container.
    pub fn container(mut self, container: impl Into<String>) -> Self {
        self.container = Some(container.into());
        self
    }

    /// Connects standard input.
    pub fn stdin(mut self, on: bool) -> Self {
        self.stdin = on;
        self
    }

    /// Connects standard output.
    pub fn stdout(mut self, on: bool) -> Self {
        self.stdout = on;
        self
    }

    /// Connects standard error.
    pub fn stderr(mut self, on: bool) -> Self {
        self.stderr = on;
        self
    }

    /// Allocates a terminal.
    pub fn tty(mut self, on: bool) -> Self {
        self.tty = on;
        self
    }

    /// The query parameters, with the API's names (`false` flags are left out).
    pub fn to_query(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        for (name, on) in [
            ("stdin", self.stdin),
            ("stdout", self.stdout),
            ("stderr", self.stderr),
            ("tty", self.tty),
        ] {
            if on {
                q.push((name, "true".to_owned()));
            }
        }
        if let Some(c) = &self.container {
            q.push(("container", c.clone()));
        }
        q
    }

    /// The checks the API server makes, done before connecting (the URL alone is used, so
    /// the request builder's own checks do not apply).
    fn validate(&self, pod: &str) -> Result<()> {
        if pod.is_empty() {
            return Err(Error::InvalidRequest("a pod name must not be empty".into()));
        }
        if !(self.stdin || self.stdout || self.stderr) {
            return Err(Error::InvalidRequest(
                "one of stdin, stdout or stderr must be connected".into(),
            ));
        }
        if self.tty && self.stderr {
            return Err(Error::InvalidRequest(
                "stderr must be off with tty (a terminal merges it into stdout)".into(),
            ));
        }
        Ok(())
    }
}

/// Why an exec or attach session failed after it was connected.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// Reading from the websocket failed.
    #[error("receiving from the remote process")]
    Receive(#[source] tungstenite::Error),
    /// Writing to the websocket failed.
    #[error("sending to the remote process")]
    Send(#[source] tungstenite::Error),
    /// Reading the local standard input failed.
    #[error("reading standard input")]
    Stdin(#[source] std::io::Error),
    /// The status the server sent at exit was not a `Status`.
    #[error("decoding the exit status")]
    Status(#[source] serde_json::Error),
    /// The background task copying the streams panicked or was aborted.
    #[error("the stream task ended abnormally")]
    Task(#[source] tokio::task::JoinError),
}

// === impl Api<Pod> ===

impl Api<Pod> {
    fn exec_request<I, T>(&self, name: &str, command: I, options: &ExecOptions) -> Request
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.object_request(Method::GET, name)
            .subresource("exec")
            .params(options.to_query())
            .params(command.into_iter().map(|arg| ("command", arg)))
    }

    fn attach_request(&self, name: &str, options: &AttachOptions) -> Request {
        self.object_request(Method::GET, name)
            .subresource("attach")
            .params(options.to_query())
    }

    /// Runs `command` (not through a shell) in a container of the pod.
    #[doc(alias = "remotecommand")]
    pub async fn exec<I, T>(
        &self,
        name: &str,
        command: I,
        options: &ExecOptions,
    ) -> Result<AttachedProcess>
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        let command: Vec<String> = command.into_iter().map(Into::into).collect();
        if command.is_empty() {
            return Err(Error::InvalidRequest("exec needs a command".into()));
        }
        options.validate(name)?;
        let url = self.exec_request(name, command, options).url();
        connect(self.client().kube(), url, options).await
    }

    /// Attaches to the main process of a container (its standard streams must have been
    /// opened by the container spec, e.g. `stdin: true` for input).
    pub async fn attach(&self, name: &str, options: &AttachOptions) -> Result<AttachedProcess> {
        options.validate(name)?;
        let url = self.attach_request(name, options).url();
        connect(self.client().kube(), url, options).await
    }
}

async fn connect(
    kube: &kube::Client,
    url: String,
    options: &AttachOptions,
) -> Result<AttachedProcess> {
    let request = http::Request::builder()
        .method(Method::GET)
        .uri(&url)
        .body(Vec::new())
        .map_err(|e| Error::InvalidRequest(format!("{url}: {e}")))?;
    match kube.connect(request).await {
        Ok(connection) => {
            let close = connection.supports_stream_close();
            Ok(AttachedProcess::start(
                connection.into_stream(),
                close,
                options,
            ))
        }
        Err(kube::Error::Api(status)) => Err(Error::Api(Box::new(ApiError {
            verb: Method::GET,
            url,
            status: *status,
            retry_after: None,
        }))),
        Err(source) => Err(Error::Transport {
            verb: Method::GET,
            url,
            source,
        }),
    }
}

/// The exit code a remote process's final `Status` reports: 0 on success, the code of a
/// `NonZeroExitCode` failure, `None` for any other failure.
pub fn exit_code(status: &Status) -> Option<i32> {
    if status.is_success() {
        return Some(0);
    }
    if status.reason != "NonZeroExitCode" {
        return None;
    }
    status
        .details
        .as_ref()?
        .causes
        .iter()
        .find(|c| c.reason == "ExitCode")?
        .message
        .parse()
        .ok()
}

/// A process started by [`Api::exec`] or attached to by [`Api::attach`]: its standard streams
/// (those that were asked for), a terminal-size sender (with `tty`), and its exit status.
///
/// The streams are copied by a background task, aborted when this is dropped.
#[derive(Debug)]
pub struct AttachedProcess {
    stdin: Option<DuplexStream>,
    stdout: Option<DuplexStream>,
    stderr: Option<DuplexStream>,
    resize: Option<mpsc::Sender<TerminalSize>>,
    task: Option<JoinHandle<Result<Option<Status>, ExecError>>>,
}

impl Drop for AttachedProcess {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

impl AttachedProcess {
    /// Starts copying between `socket` and local pipes. `stream_close`: the protocol (v5)
    /// can signal the end of stdin without closing the socket.
    fn start<S>(socket: S, stream_close: bool, options: &AttachOptions) -> Self
    where
        S: Stream<Item = Result<Message, tungstenite::Error>>
            + Sink<Message, Error = tungstenite::Error>
            + Send
            + 'static,
    {
        let pipe = |on: bool| on.then(|| tokio::io::duplex(BUFFER));
        let (stdin_reader, stdin) = pipe(options.stdin).unzip();
        let (stdout, stdout_writer) = pipe(options.stdout).unzip();
        let (stderr, stderr_writer) = pipe(options.stderr).unzip();
        let (resize, resize_rx) = options.tty.then(|| mpsc::channel(8)).unzip();
        let pump = Pump {
            stream_close,
            stdin: stdin_reader.map(ReaderStream::new),
            stdout: stdout_writer,
            stderr: stderr_writer,
            resize: resize_rx,
        };
        Self {
            stdin,
            stdout,
            stderr,
            resize,
            task: Some(tokio::spawn(pump.run(socket))),
        }
    }

    /// The process's standard input (once; with `stdin`): write to it; shut it down or drop
    /// it to send end-of-file.
    pub fn stdin(&mut self) -> Option<DuplexStream> {
        self.stdin.take()
    }

    /// The process's standard output (once; with `stdout`): read from it; it ends when the
    /// process does. Once dropped, the rest of the output is discarded.
    pub fn stdout(&mut self) -> Option<DuplexStream> {
        self.stdout.take()
    }

    /// The process's standard error (once; with `stderr`).
    pub fn stderr(&mut self) -> Option<DuplexStream> {
        self.stderr.take()
    }

    /// A sender of terminal sizes (once; with `tty`).
    pub fn terminal_size(&mut self) -> Option<mpsc::Sender<TerminalSize>> {
        self.resize.take()
    }

    /// Waits for the session to end and returns the `Status` the server sent at exit (see
    /// [`exit_code`]), or `None` if the connection closed without one. Output not taken with
    /// [`stdout`](Self::stdout) / [`stderr`](Self::stderr) is discarded; standard input not
    /// taken is closed.
    pub async fn join(mut self) -> Result<Option<Status>, ExecError> {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.shutdown().await;
        }
        self.stdout = None;
        self.stderr = None;
        self.resize = None;
        match self.task.take() {
            Some(task) => task.await.map_err(ExecError::Task)?,
            None => Ok(None),
        }
    }

    /// Stops copying and closes the connection, which ends the remote command.
    pub fn abort(&self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// The local ends of the streams, copied to and from the socket by [`Pump::run`].
struct Pump {
    stream_close: bool,
    stdin: Option<ReaderStream<DuplexStream>>,
    stdout: Option<DuplexStream>,
    stderr: Option<DuplexStream>,
    resize: Option<mpsc::Receiver<TerminalSize>>,
}

impl Pump {
    async fn run<S>(mut self, socket: S) -> Result<Option<Status>, ExecError>
    where
        S: Stream<Item = Result<Message, tungstenite::Error>>
            + Sink<Message, Error = tungstenite::Error>,
    {
        let (mut tx, rx) = socket.split();
        let mut rx = std::pin::pin!(rx);
        let mut ping =
            tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
        let mut status = None;
        loop {
            let stdin_next = async {
                match self.stdin.as_mut() {
                    Some(s) => s.next().await,
                    None => std::future::pending().await,
                }
            };
            let resize_next = async {
                match self.resize.as_mut() {
                    Some(r) => r.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                message = rx.next() => match message {
                    None => break,
                    Some(Err(e)) => return Err(ExecError::Receive(e)),
                    Some(Ok(Message::Binary(data))) => {
                        let Some((&channel, payload)) = data.split_first() else { continue };
                        match channel {
                            STDOUT => write_or_discard(&mut self.stdout, payload).await,
                            STDERR => write_or_discard(&mut self.stderr, payload).await,
                            // The first frame of each channel is empty: skip those.
                            STATUS if !payload.is_empty() => {
                                status = Some(serde_json::from_slice(payload).map_err(ExecError::Status)?);
                                break;
                            }
                            _ => {}
                        }
                    }
                    // Nothing follows a close (tungstenite has queued the reply).
                    Some(Ok(Message::Close(_))) => break,
                    // Pings are answered by tungstenite; the server sends nothing else we use.
                    Some(Ok(_)) => {}
                },
                chunk = stdin_next => match chunk {
                    Some(Ok(bytes)) => tx.send(frame(STDIN, &bytes)).await.map_err(ExecError::Send)?,
                    Some(Err(e)) => return Err(ExecError::Stdin(e)),
                    None => {
                        self.stdin = None;
                        if self.stream_close {
                            tx.send(Message::binary(vec![CLOSE, STDIN])).await.map_err(ExecError::Send)?;
                        } else {
                            // v4 cannot say "end of stdin": closing is the only signal left.
                            tx.close().await.map_err(ExecError::Send)?;
                        }
                    }
                },
                size = resize_next => match size {
                    Some(size) => {
                        let json = serde_json::to_vec(&size).unwrap_or_default();
                        tx.send(frame(RESIZE, &json)).await.map_err(ExecError::Send)?;
                    }
                    None => self.resize = None,
                },
                _ = ping.tick() => tx.send(Message::Ping(Bytes::new())).await.map_err(ExecError::Send)?,
            }
        }
        for mut out in [self.stdout.take(), self.stderr.take()]
            .into_iter()
            .flatten()
        {
            let _ = out.shutdown().await;
        }
        Ok(status)
    }
}

fn frame(channel: u8, payload: &[u8]) -> Message {
    let mut data = Vec::with_capacity(payload.len() + 1);
    data.push(channel);
    data.extend_from_slice(payload);
    Message::binary(data)
}

/// Writes to a local pipe; once its reader is gone, that stream's output is dropped.
async fn write_or_discard(pipe: &mut Option<DuplexStream>, data: &[u8]) {
    if let Some(w) = pipe
        && w.write_all(data).await.is_err()
    {
        *pipe = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::response::{StatusCause, StatusDetails};
    use tokio::io::AsyncReadExt;
    use tokio_tungstenite::WebSocketStream;
    use tokio_tungstenite::tungstenite::protocol::Role;

    fn pods() -> Api<Pod> {
        let config =
            crate::Config::from_kube(kube::Config::new("http://127.0.0.1:1".parse().unwrap()));
        config.build().unwrap().namespaced::<Pod>("ns")
    }

    #[tokio::test]
    async fn exec_query_repeats_command_and_sets_flags() {
        let options = ExecOptions::default().container("app").stdin(true);
        let url = pods()
            .exec_request("p", ["sh", "-c", "echo a&b"], &options)
            .url();
        assert_eq!(
            url,
            "/api/v1/namespaces/ns/pods/p/exec?stdin=true&stdout=true&stderr=true\
             &container=app&command=sh&command=-c&command=echo+a%26b"
        );
        let tty = AttachOptions::default().stderr(false).stdin(true).tty(true);
        let url = pods().attach_request("p", &tty).url();
        assert_eq!(
            url,
            "/api/v1/namespaces/ns/pods/p/attach?stdin=true&stdout=true&tty=true"
        );
    }

    #[tokio::test]
    async fn invalid_options_fail_before_connecting() {
        let none = AttachOptions::default().stdout(false).stderr(false);
        let err = pods().attach("p", &none).await.unwrap_err();
        assert!(matches!(err, Error::InvalidRequest(_)), "{err}");
        let tty = AttachOptions::default().tty(true);
        let err = pods().attach("p", &tty).await.unwrap_err();
        assert!(err.to_string().contains("tty"), "{err}");
        let empty: [&str; 0] = [];
        let err = pods()
            .exec("p", empty, &ExecOptions::default())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("command"), "{err}");
        let err = pods()
            .attach("", &AttachOptions::default())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("pod name"), "{err}");
    }

    #[test]
    fn exit_codes() {
        assert_eq!(exit_code(&Status::success()), Some(0));
        let mut failed = Status::failure(
            "command terminated with non-zero exit code",
            "NonZeroExitCode",
        );
        failed.details = Some(StatusDetails {
            name: String::new(),
            group: String::new(),
            kind: String::new(),
            uid: String::new(),
            causes: vec![StatusCause {
                reason: "ExitCode".into(),
                message: "42".into(),
                field: String::new(),
            }],
            retry_after_seconds: 0,
        });
        assert_eq!(exit_code(&failed), Some(42));
        assert_eq!(exit_code(&Status::failure("boom", "InternalError")), None);
    }

    async fn pair(
        stream_close: bool,
        options: &AttachOptions,
    ) -> (AttachedProcess, WebSocketStream<tokio::io::DuplexStream>) {
        let (a, b) = tokio::io::duplex(1 << 16);
        let client = WebSocketStream::from_raw_socket(a, Role::Client, None).await;
        let server = WebSocketStream::from_raw_socket(b, Role::Server, None).await;
        (
            AttachedProcess::start(client, stream_close, options),
            server,
        )
    }

    async fn next_binary(server: &mut WebSocketStream<tokio::io::DuplexStream>) -> Vec<u8> {
        loop {
            match server.next().await {
                Some(Ok(Message::Binary(b))) => return b.to_vec(),
                Some(Ok(_)) => {}
                other => panic!("expected a binary frame, got {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn demultiplexes_output_and_returns_status() {
        let (mut process, mut server) = pair(true, &AttachOptions::default()).await;
        assert!(process.stdin().is_none() && process.terminal_size().is_none());
        let (mut out, mut err) = (process.stdout().unwrap(), process.stderr().unwrap());
        for data in [
            &[STDOUT][..],
            &[STDERR],
            b"\x01hello ",
            b"\x02oops",
            b"\x01world",
        ] {
            server.send(Message::binary(data.to_vec())).await.unwrap();
        }
        let failed = br#"{"status":"Failure","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#;
        server.send(frame(STATUS, failed)).await.unwrap();
        let (mut o, mut e) = (String::new(), String::new());
        out.read_to_string(&mut o).await.unwrap();
        err.read_to_string(&mut e).await.unwrap();
        assert_eq!((o.as_str(), e.as_str()), ("hello world", "oops"));
        let status = process.join().await.unwrap().unwrap();
        assert_eq!(exit_code(&status), Some(3));
    }

    #[tokio::test]
    async fn stdin_is_sent_and_its_end_signalled_on_v5() {
        let options = AttachOptions::default().stdin(true);
        let (mut process, mut server) = pair(true, &options).await;
        let mut stdin = process.stdin().unwrap();
        stdin.write_all(b"input").await.unwrap();
        assert_eq!(next_binary(&mut server).await, b"\x00input");
        drop(stdin);
        assert_eq!(next_binary(&mut server).await, [CLOSE, STDIN]);
        server
            .send(frame(STATUS, br#"{"status":"Success"}"#))
            .await
            .unwrap();
        let status = process.join().await.unwrap();
        assert_eq!(status.as_ref().and_then(exit_code), Some(0));
    }

    #[tokio::test]
    async fn stdin_end_closes_the_socket_on_v4() {
        let options = AttachOptions::default().stdin(true);
        let (mut process, mut server) = pair(false, &options).await;
        drop(process.stdin());
        let mut closed = false;
        // The client's close arrives; tungstenite answers it while we drain to the end.
        while let Some(message) = server.next().await {
            match message.unwrap() {
                Message::Close(_) => closed = true,
                m => panic!("unexpected {m:?}"),
            }
        }
        assert!(closed, "the client did not close the socket");
        assert!(process.join().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn terminal_size_goes_to_the_resize_channel() {
        let options = AttachOptions::default().stderr(false).tty(true);
        let (mut process, mut server) = pair(true, &options).await;
        let sizes = process.terminal_size().unwrap();
        sizes
            .send(TerminalSize {
                width: 120,
                height: 40,
            })
            .await
            .unwrap();
        let data = next_binary(&mut server).await;
        assert_eq!(data[0], RESIZE);
        let json: serde_json::Value = serde_json::from_slice(&data[1..]).unwrap();
        assert_eq!(json, serde_json::json!({"Width": 120, "Height": 40}));
        // A server that hangs up without a status: the session ends with none.
        server.close(None).await.unwrap();
        while server.next().await.is_some() {}
        assert!(process.join().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn output_nobody_reads_does_not_block_join() {
        let (process, mut server) = pair(true, &AttachOptions::default()).await;
        let big = vec![b'x'; 4 * BUFFER];
        server.send(frame(STDOUT, &big)).await.unwrap();
        server
            .send(frame(STATUS, br#"{"status":"Success"}"#))
            .await
            .unwrap();
        let status = process.join().await.unwrap();
        assert!(status.is_some_and(|s| s.is_success()));
    }
}
