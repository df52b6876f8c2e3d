//! Throughput of the rate-limiting queue, in the loop client-go's workqueue is measured with.
//!
//! ```text
//! cargo run --release -p ferrokube-workqueue --example queue_bench -- --keys 10000 --rounds 10 --workers 4
//! ```
//!
//! One producer adds `--keys` distinct keys, `--rounds` times over, with plain `add` on a
//! `RateLimitingQueue` using the default controller rate limiter (client-go:
//! `NewTypedRateLimitingQueue(DefaultTypedControllerRateLimiter())`), while `--workers` tasks loop
//! `get` → `forget` → `done`. When the producer is through it calls `shutdown_with_drain` (which,
//! as client-go's, waits for the keys being processed) and waits for the workers, which end once
//! every queued key was processed; the clock stops there. Keys are built beforehand
//! (`"key-%d"`), so their allocation is not measured; `--key-type` picks how they are held:
//! `arc` (`Arc<str>`, the default: cloning is a reference-count increment, like copying a Go
//! string header), `string` (`String`: cloning allocates) or `u64`.
//!
//! `--threads T` sets the Tokio worker threads (default: one per core).
//!
//! Prints one line: `RESULT adds=… processed=… workers=… adds_per_sec=… key_type=… elapsed_ms=…`.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use ferrokube_workqueue::{Key, RateLimitingQueue, default_controller_rate_limiter};

struct Args {
    keys: usize,
    rounds: usize,
    workers: usize,
    key_type: String,
    threads: Option<usize>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        keys: 10_000,
        rounds: 10,
        workers: 4,
        key_type: "arc".into(),
        threads: None,
    };
    let mut argv = std::env::args().skip(1);
    while let Some(flag) = argv.next() {
        let mut value = || argv.next().ok_or_else(|| format!("{flag} needs a value"));
        let number = |v: String| v.parse::<usize>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--keys" => args.keys = number(value()?)?,
            "--rounds" => args.rounds = number(value()?)?,
            "--workers" => args.workers = number(value()?)?,
            "--threads" => args.threads = Some(number(value()?)?),
            "--key-type" => args.key_type = value()?,
            "-h" | "--help" => {
                return Err("usage: queue_bench [--keys K] [--rounds R] [--workers W] \
                            [--key-type arc|string|u64] [--threads T]"
                    .into());
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if args.workers == 0 {
        return Err("--workers must be at least 1".into());
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::FAILURE;
        }
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = args.threads {
        builder.worker_threads(threads);
    }
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let names = (0..args.keys).map(|i| format!("key-{i}"));
    let (adds, processed, elapsed) = match args.key_type.as_str() {
        "arc" => runtime.block_on(run(names.map(Arc::<str>::from).collect(), &args)),
        "string" => runtime.block_on(run(names.collect(), &args)),
        "u64" => runtime.block_on(run((0..args.keys as u64).collect(), &args)),
        other => {
            eprintln!("unknown --key-type {other}");
            return ExitCode::FAILURE;
        }
    };
    let seconds = elapsed.as_secs_f64();
    println!(
        "RESULT adds={adds} processed={processed} workers={} adds_per_sec={:.0} key_type={} elapsed_ms={:.1}",
        args.workers,
        adds as f64 / seconds,
        args.key_type,
        seconds * 1000.0,
    );
    ExitCode::SUCCESS
}

async fn run<K: Key>(keys: Vec<K>, args: &Args) -> (u64, u64, std::time::Duration) {
    let queue = RateLimitingQueue::new(default_controller_rate_limiter());
    let processed = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..args.workers)
        .map(|_| {
            let (queue, processed) = (queue.clone(), Arc::clone(&processed));
            tokio::spawn(async move {
                let mut count = 0;
                while let Some(key) = queue.get().await {
                    queue.forget(&key);
                    queue.done(&key);
                    count += 1;
                }
                processed.fetch_add(count, Ordering::Relaxed);
            })
        })
        .collect();

    let start = Instant::now();
    // The producer runs on its own thread, as a goroutine would: `add` never blocks.
    let producer = {
        let queue = queue.clone();
        let rounds = args.rounds;
        tokio::task::spawn_blocking(move || {
            for _ in 0..rounds {
                for key in &keys {
                    queue.add(key.clone());
                }
            }
        })
    };
    let producer_ok = producer.await.is_ok();
    queue.shutdown_with_drain().await;
    // The workers still get what is queued, then `None`.
    let mut workers_ok = true;
    for worker in workers {
        workers_ok &= worker.await.is_ok();
    }
    let elapsed = start.elapsed();
    assert!(producer_ok, "the producer panicked");
    assert!(workers_ok, "a worker panicked");
    let adds = (args.keys * args.rounds) as u64;
    (adds, processed.load(Ordering::Relaxed), elapsed)
}
