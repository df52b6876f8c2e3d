//! [`ParallelDecoder`]: a large list body decoded on the runtime's worker threads while it
//! streams in.
//!
//! The task reading the body only finds where items end ([`ListScanner`]) and hands out
//! batches of complete items; decoding them — nearly all of the CPU a list costs — runs in
//! tasks of its own, up to one per runtime worker (at most [`MAX_TASKS`]), so an initial list
//! of thousands of objects syncs sooner and no worker is busy for long at a time. On a
//! single-threaded runtime batches are decoded where the body is read. At most that many
//! batches wait to be decoded: a slow decoder slows the reading of the body, it does not make
//! the body pile up in memory.
//!
//! A panic while decoding (in a transform, say) is a panic of the task reading the body, with
//! the same payload, when its batch is collected; a decoder dropped before then (its reader
//! was cancelled, or failed on an earlier batch) aborts the tasks still decoding.

use std::collections::VecDeque;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta;
use serde::de::DeserializeOwned;
use tokio_util::task::AbortOnDropHandle;

use super::fast::FastPath;
use super::list::{Batch, ListScanner};
use super::{DecodeError, Decoder};

/// Bytes of complete items per batch.
const BATCH_BYTES: usize = 64 * 1024;

/// The most batches of one list decoded at once.
const MAX_TASKS: usize = 4;

/// What a decoding task gives back: its reusable buffers and the batch's objects.
type Decoded<K> = (FastPath, Result<Vec<Arc<K>>, DecodeError>);

/// Decodes a list body fed in chunks, in parallel once it is larger than one batch.
#[derive(Debug)]
pub(crate) struct ParallelDecoder<K> {
    decoder: Decoder<K>,
    scanner: ListScanner,
    batch_bytes: usize,
    tasks: usize,
    /// Batches being decoded, oldest first; dropping them aborts their tasks.
    decoding: VecDeque<AbortOnDropHandle<Decoded<K>>>,
    /// Buffers of finished tasks, for the next ones.
    spare: Vec<FastPath>,
    items: Vec<Arc<K>>,
}

impl<K: DeserializeOwned + Send + Sync + 'static> ParallelDecoder<K> {
    /// A decoder for one list response, decoding on as many tasks as the runtime has workers.
    pub(crate) fn new(decoder: Decoder<K>) -> Self {
        let workers = tokio::runtime::Handle::try_current()
            .map_or(1, |runtime| runtime.metrics().num_workers());
        Self::with(decoder, BATCH_BYTES, workers.min(MAX_TASKS))
    }

    /// A decoder with the given batch size and number of tasks (1: decode in place).
    pub(crate) fn with(decoder: Decoder<K>, batch_bytes: usize, tasks: usize) -> Self {
        Self {
            scanner: ListScanner::new(decoder.strips_managed_fields()),
            decoder,
            batch_bytes,
            tasks,
            decoding: VecDeque::new(),
            spare: Vec::new(),
            items: Vec::new(),
        }
    }

    /// Takes the next chunk of the body; hands out a batch when one is complete.
    pub(crate) async fn feed(&mut self, chunk: &[u8]) -> Result<(), DecodeError> {
        self.scanner.feed(chunk)?;
        match self.scanner.batch(self.batch_bytes) {
            Some(batch) => self.decode(batch).await,
            None => Ok(()),
        }
    }

    /// The list's metadata and items in order, once the whole body was fed.
    pub(crate) async fn finish(mut self) -> Result<(ListMeta, Vec<Arc<K>>), DecodeError> {
        let (metadata, last) = self.scanner.finish()?;
        if let Some(batch) = last {
            self.decode(batch).await?;
        }
        while !self.decoding.is_empty() {
            self.collect_oldest().await?;
        }
        Ok((metadata, self.items))
    }

    /// How many batches are decoded at once (1: in place).
    #[cfg(test)]
    pub(crate) fn tasks(&self) -> usize {
        self.tasks
    }

    async fn decode(&mut self, batch: Batch) -> Result<(), DecodeError> {
        let mut fast = self.spare.pop().unwrap_or_else(FastPath::new);
        if self.tasks <= 1 {
            let decoded = batch.decode(&self.decoder, &mut fast);
            self.spare.push(fast);
            self.items.extend(decoded?);
            return Ok(());
        }
        if self.decoding.len() >= self.tasks {
            self.collect_oldest().await?;
        }
        let decoder = self.decoder.clone();
        self.decoding
            .push_back(AbortOnDropHandle::new(tokio::spawn(async move {
                let decoded = batch.decode(&decoder, &mut fast);
                (fast, decoded)
            })));
        Ok(())
    }

    /// Waits for the oldest batch being decoded and appends its objects; a panic while
    /// decoding it goes on here.
    async fn collect_oldest(&mut self) -> Result<(), DecodeError> {
        let Some(task) = self.decoding.pop_front() else {
            return Ok(());
        };
        match task.await {
            Ok((fast, decoded)) => {
                self.spare.push(fast);
                self.items.extend(decoded?);
                Ok(())
            }
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Err(DecodeError::Stopped),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use k8s_openapi::api::core::v1::ConfigMap;

    use super::*;

    fn body(items: usize) -> Vec<u8> {
        let items: Vec<String> = (0..items)
            .map(|i| format!(r#"{{"metadata":{{"name":"cm-{i}","namespace":"ns"}}}}"#))
            .collect();
        format!(
            r#"{{"metadata":{{"resourceVersion":"7"}},"items":[{}]}}"#,
            items.join(",")
        )
        .into_bytes()
    }

    /// A decoder whose transform counts its calls and panics on `victim`.
    fn decoder(calls: &Arc<AtomicUsize>, victim: &'static str) -> Decoder<ConfigMap> {
        let calls = Arc::clone(calls);
        Decoder::new(
            true,
            Some(Arc::new(move |cm: ConfigMap| {
                calls.fetch_add(1, Ordering::SeqCst);
                assert!(
                    cm.metadata.name.as_deref() != Some(victim),
                    "cannot take {victim}"
                );
                cm
            })),
        )
    }

    /// The decoding tasks run on the runtime's workers: a panic in one is a panic of the
    /// task reading the list, with the same message.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panic_in_a_decoding_task_is_the_readers_panic() {
        let calls = Arc::new(AtomicUsize::new(0));
        let mut d = ParallelDecoder::with(decoder(&calls, "cm-250"), 200, 2);
        let reader = tokio::spawn(async move {
            for chunk in body(400).chunks(100) {
                d.feed(chunk).await?;
            }
            d.finish().await.map(|(_, items)| items.len())
        });
        let error = reader.await.expect_err("decoding cm-250 panicked");
        assert!(error.is_panic(), "{error:?}");
        let payload = error.into_panic();
        assert_eq!(
            payload.downcast_ref::<String>().map(String::as_str),
            Some("cannot take cm-250")
        );
    }

    /// A decoder dropped with batches in flight (its reader was cancelled, or failed on an
    /// earlier batch) stops their tasks: nothing is decoded for nobody, and a panic in them
    /// cannot go unseen.
    #[tokio::test]
    async fn dropping_the_decoder_stops_its_tasks() {
        let calls = Arc::new(AtomicUsize::new(0));
        let mut d = ParallelDecoder::with(decoder(&calls, "none"), 200, 2);
        let body = body(400);
        let mut chunks = body.chunks(100);
        // On this single-threaded runtime the tasks cannot run before the test yields.
        while d.decoding.len() < 2 {
            let chunk = chunks.next().expect("the body makes two batches");
            d.feed(chunk).await.unwrap();
        }
        drop(d);
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            calls.load(Ordering::SeqCst),
            0,
            "a dropped decoder's tasks ran"
        );
    }
}
