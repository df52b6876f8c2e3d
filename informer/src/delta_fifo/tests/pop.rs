//! Popping: order, waiting, closing, cancellation, processing errors.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_keeps_each_producers_order() {
    let f = Arc::new(DeltaFifo::<ConfigMap>::new());
    const AMOUNT: u64 = 500;
    let producers: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|prefix| {
            let f = Arc::clone(&f);
            tokio::spawn(async move {
                for i in 0..AMOUNT {
                    f.add(mk(&format!("{prefix}{i}"), i + 1));
                    if i % 50 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            })
        })
        .collect();
    let mut last = BTreeMap::from([('a', 0), ('b', 0)]);
    for _ in 0..AMOUNT * 2 {
        let deltas = tokio::time::timeout(
            Duration::from_secs(10),
            f.pop(|_, _| Ok::<(), ProcessError<()>>(())),
        )
        .await
        .expect("no lost wakeup")
        .unwrap();
        let producer = deltas.key().chars().next().unwrap();
        let v = val(deltas.newest().unwrap().object.object());
        let prev = last.insert(producer, v).unwrap();
        assert!(v > prev, "{v} ({producer}) out of order, last was {prev}");
    }
    for p in producers {
        p.await.unwrap();
    }
    assert!(f.is_empty());
}

#[tokio::test]
async fn pop_should_unblock_when_closed() {
    let f = Arc::new(known(&[mk("foo", 5)]));
    let poppers: Vec<_> = (0..10)
        .map(|_| {
            let f = Arc::clone(&f);
            tokio::spawn(async move { f.pop(|_, _| Ok::<(), ProcessError<()>>(())).await })
        })
        .collect();
    tokio::task::yield_now().await;
    f.close();
    assert!(f.is_closed());
    for p in poppers {
        let popped = tokio::time::timeout(Duration::from_millis(500), p)
            .await
            .expect("pop returns after close")
            .unwrap();
        assert!(popped.unwrap_err().is_closed());
    }
}

#[tokio::test]
async fn close_lets_queued_keys_drain() {
    let f = DeltaFifo::new();
    f.add(mk("a", 1));
    f.add(mk("b", 2));
    f.close();
    assert_eq!(pop_val(&f), 1);
    assert_eq!(pop_val(&f), 2);
    let ended = f.pop(|_, _| Ok::<(), ProcessError<()>>(())).await;
    assert!(matches!(ended, Err(PopError::Closed)));
}

#[tokio::test]
async fn pop_waits_for_an_add() {
    let f = Arc::new(DeltaFifo::new());
    let popper = {
        let f = Arc::clone(&f);
        tokio::spawn(async move {
            f.pop(|deltas, _| {
                assert_eq!(deltas.key(), "late");
                Ok::<(), ProcessError<()>>(())
            })
            .await
        })
    };
    tokio::task::yield_now().await;
    assert!(!popper.is_finished());
    f.add(mk("late", 1));
    let popped = tokio::time::timeout(Duration::from_secs(5), popper)
        .await
        .expect("woken by the add")
        .unwrap()
        .unwrap();
    assert_eq!(popped.key(), "late");
}

#[tokio::test]
async fn dropped_pop_takes_nothing() {
    let f = DeltaFifo::new();
    {
        let pending = f.pop(|_, _| Ok::<(), ProcessError<()>>(()));
        assert!(pending.now_or_never().is_none());
    }
    f.add(mk("a", 1));
    assert_eq!(f.len(), 1);
    assert_eq!(pop_val(&f), 1);
}

#[test]
fn process_errors_requeue_or_drop() {
    let f = DeltaFifo::new();
    f.add(mk("a", 1));
    f.add(mk("b", 2));
    let failed = f
        .pop(|_, _| Err(ProcessError::Requeue("boom")))
        .now_or_never()
        .unwrap();
    match failed {
        Err(PopError::Process {
            key,
            error,
            requeued,
        }) => assert_eq!((key.as_str(), error, requeued), ("a", "boom", true)),
        other => panic!("{other:?}"),
    }
    // Requeued at the back, with its deltas.
    assert_eq!(f.list_keys(), ["b", "a"]);
    assert_eq!(queued(&f, "a"), [d(Added, mk("a", 1))]);

    let failed = f
        .pop(|_, _| Err(ProcessError::Failed("dropped")))
        .now_or_never()
        .unwrap();
    assert!(matches!(
        failed,
        Err(PopError::Process {
            requeued: false,
            ..
        })
    ));
    assert_eq!(f.list_keys(), ["a"]);
}

#[test]
fn add_if_not_present_keeps_newer_deltas() {
    let f = DeltaFifo::new();
    f.add(mk("a", 1));
    let popped = try_pop(&f).unwrap();
    f.update(mk("a", 2));
    f.add_if_not_present(popped.clone());
    assert_eq!(queued(&f, "a"), [d(Updated, mk("a", 2))]);
    try_pop(&f).unwrap();
    f.add_if_not_present(popped);
    assert_eq!(queued(&f, "a"), [d(Added, mk("a", 1))]);
}
