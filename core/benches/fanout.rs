#![allow(missing_docs)]
//! Fan-out: lossless delivery of 4 KiB frames to 1, 16, 256 and 4096
//! subscribers, for arcly-core, the published arcly-stream 0.1.5 and
//! tokio::sync::broadcast, in one harness:
//!
//! * a 2-worker tokio runtime; the publisher and every subscriber are tasks;
//! * each subscriber awaits frames and counts them until it has all of them;
//! * every ring or channel is larger than the frames sent, so nothing is lost;
//! * throughput is deliveries (frames × subscribers) per second.
//!
//! Also measured: the publisher's cost per frame with one stalled subscriber
//! present, and the heap bytes each idle subscriber costs (printed).
//!
//! Run: `cargo bench -p arcly-core --bench fanout`

use std::alloc::{GlobalAlloc, Layout, System};
use std::future::poll_fn;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arcly_core::bus::{self, BusConfig, Delivery, DeliveryRef};
use arcly_core::frame::{CodecId, MediaFrame, TrackId};
use arcly_core::time::MediaTime;
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

/// Counts live heap bytes, for the memory-per-subscriber figures.
struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator and only adds bookkeeping.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const FRAMES: usize = 512;
const SUBSCRIBERS: [usize; 4] = [1, 16, 256, 4096];

/// Deliveries an owned subscriber takes per call (from `ARCLY_OWNED_BATCH`,
/// default 16): with thousands of subscribers each one's batch buffer has
/// to stay in cache (256 deliveries each, 4096 subscribers hold 84 MB of
/// buffers, and the owned path ran a third slower).
static OWNED_BATCH_CELL: std::sync::OnceLock<usize> = std::sync::OnceLock::new();

/// One 4 KiB payload per frame, as an ingest produces them: every frame has
/// its own buffer (and its own reference count).
fn payloads() -> Vec<Bytes> {
    (0..FRAMES)
        .map(|i| Bytes::from(vec![i as u8; 4096]))
        .collect()
}

/// The same payloads with no reference count: `Bytes::from_static` clones
/// and drops without touching shared memory. Only for measuring what the
/// owned path's reference counting costs (an ingest never makes these).
fn static_payloads() -> Vec<Bytes> {
    static BLOCK: [u8; 4096] = [0x5a; 4096];
    (0..FRAMES).map(|_| Bytes::from_static(&BLOCK)).collect()
}

fn owned_batch() -> usize {
    *OWNED_BATCH_CELL.get_or_init(|| {
        std::env::var("ARCLY_OWNED_BATCH")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(16)
    })
}

fn payload() -> Bytes {
    Bytes::from(vec![0x5a; 4096])
}

fn frame(p: &Bytes, i: usize) -> MediaFrame {
    MediaFrame::video(
        TrackId(0),
        CodecId::H264,
        i % 60 == 0,
        MediaTime::from_millis(i as i64),
        p.clone(),
    )
}

fn seed_frame(p: &Bytes, i: usize) -> arcly_stream::MediaFrame {
    arcly_stream::MediaFrame::new_video(
        i as i64,
        i as i64,
        p.clone(),
        arcly_stream::CodecId::H264,
        i % 60 == 0,
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("runtime")
}

fn arcly_cfg(subs: usize) -> BusConfig {
    BusConfig {
        capacity: FRAMES * 2,
        lag_limit: u64::MAX,
        max_subscribers: subs.max(64),
        ..BusConfig::default()
    }
}

/// One measured round: subscribers are attached and parked before the clock
/// starts; the clock stops when the last one has counted every frame.
async fn round_arcly(subs: usize, borrowed: bool, p: Vec<Bytes>) -> Duration {
    let (mut tx, bus) = bus::channel(arcly_cfg(subs));
    let mut tasks = Vec::with_capacity(subs);
    for _ in 0..subs {
        let mut sub = bus.subscribe().expect("subscribe");
        tasks.push(tokio::spawn(async move {
            let mut n = 0;
            let mut buf: Vec<Delivery> = Vec::with_capacity(owned_batch());
            while n < FRAMES {
                if borrowed {
                    let r = poll_fn(|cx| {
                        sub.poll_for_each(cx, 1024, |d| {
                            if let DeliveryRef::Frame(_) = d {
                                n += 1
                            }
                        })
                    })
                    .await;
                    if r.is_err() {
                        break;
                    }
                } else {
                    buf.clear();
                    let r = poll_fn(|cx| sub.poll_recv_batch(cx, &mut buf, owned_batch())).await;
                    n += buf
                        .iter()
                        .filter(|d| matches!(d, Delivery::Frame(_)))
                        .count();
                    if r.is_err() {
                        break;
                    }
                }
            }
            n
        }));
    }
    tokio::task::yield_now().await;
    let start = Instant::now();
    let publisher = tokio::spawn(async move {
        for (i, payload) in p.iter().enumerate() {
            tx.publish(frame(payload, i)).expect("open");
            if i % 64 == 63 {
                tokio::task::yield_now().await;
            }
        }
        tx
    });
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("task");
    }
    let elapsed = start.elapsed();
    drop(publisher.await);
    assert_eq!(total, FRAMES * subs, "lossless");
    elapsed
}

async fn round_seed(subs: usize) -> Duration {
    let p = payloads();
    let handle = arcly_stream::bus::StreamHandle::new("live".into(), "bench".into(), FRAMES * 2);
    let mut tasks = Vec::with_capacity(subs);
    for _ in 0..subs {
        let mut sub = handle.subscribe_resilient();
        tasks.push(tokio::spawn(async move {
            let mut n = 0;
            while n < FRAMES {
                match sub.recv().await {
                    Some(_) => n += 1,
                    None => break,
                }
            }
            n
        }));
    }
    tokio::task::yield_now().await;
    let start = Instant::now();
    let publisher = tokio::spawn(async move {
        for (i, payload) in p.iter().enumerate() {
            handle.publish_frame(seed_frame(payload, i)).expect("open");
            if i % 64 == 63 {
                tokio::task::yield_now().await;
            }
        }
        handle
    });
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("task");
    }
    let elapsed = start.elapsed();
    drop(publisher.await);
    assert_eq!(total, FRAMES * subs, "lossless");
    elapsed
}

async fn round_broadcast(subs: usize) -> Duration {
    let p = payloads();
    let (tx, _) = tokio::sync::broadcast::channel::<MediaFrame>(FRAMES * 2);
    let mut tasks = Vec::with_capacity(subs);
    for _ in 0..subs {
        let mut rx = tx.subscribe();
        tasks.push(tokio::spawn(async move {
            let mut n = 0;
            while n < FRAMES {
                match rx.recv().await {
                    Ok(_) => n += 1,
                    Err(_) => break,
                }
            }
            n
        }));
    }
    tokio::task::yield_now().await;
    let start = Instant::now();
    let publisher = tokio::spawn(async move {
        for (i, payload) in p.iter().enumerate() {
            tx.send(frame(payload, i)).expect("receivers");
            if i % 64 == 63 {
                tokio::task::yield_now().await;
            }
        }
        tx
    });
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("task");
    }
    let elapsed = start.elapsed();
    drop(publisher.await);
    assert_eq!(total, FRAMES * subs, "lossless");
    elapsed
}

fn fanout(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("fanout");
    g.sample_size(10);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(3));
    for subs in SUBSCRIBERS {
        g.throughput(Throughput::Elements((FRAMES * subs) as u64));
        g.bench_with_input(BenchmarkId::new("arcly-core", subs), &subs, |b, &s| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| rt.block_on(round_arcly(s, false, payloads())))
                    .sum()
            })
        });
        // The owned path with payloads that have no reference count: the
        // gap to the line above is what counting costs.
        g.bench_with_input(
            BenchmarkId::new("arcly-core-owned-uncounted", subs),
            &subs,
            |b, &s| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| rt.block_on(round_arcly(s, false, static_payloads())))
                        .sum()
                })
            },
        );
        g.bench_with_input(
            BenchmarkId::new("arcly-core-borrowed", subs),
            &subs,
            |b, &s| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| rt.block_on(round_arcly(s, true, payloads())))
                        .sum()
                })
            },
        );
        g.bench_with_input(
            BenchmarkId::new("arcly-stream-0.1.5", subs),
            &subs,
            |b, &s| b.iter_custom(|iters| (0..iters).map(|_| rt.block_on(round_seed(s))).sum()),
        );
        g.bench_with_input(BenchmarkId::new("tokio-broadcast", subs), &subs, |b, &s| {
            b.iter_custom(|iters| (0..iters).map(|_| rt.block_on(round_broadcast(s))).sum())
        });
    }
    g.finish();
}

/// The publisher's cost per frame while one subscriber never reads. The
/// stall grows through the whole measurement (millions of frames); a cost
/// that grew with it would show as a much higher mean than the no-subscriber
/// case.
fn publish_with_stalled_subscriber(c: &mut Criterion) {
    let mut g = c.benchmark_group("publish-stalled-subscriber");
    let p = payload();
    {
        let (mut tx, bus) = bus::channel(arcly_cfg(1));
        let mut stalled = bus.subscribe().expect("subscribe");
        // It reads once, then never again.
        tx.publish(frame(&p, 0)).expect("open");
        let _ = stalled.try_recv();
        let mut i = 1;
        g.bench_function("arcly-core", |b| {
            b.iter(|| {
                tx.publish(frame(&p, i)).expect("open");
                i += 1;
            })
        });
        drop(stalled);
    }
    {
        let (mut tx, _bus) = bus::channel(arcly_cfg(1));
        let mut i = 0;
        g.bench_function("arcly-core-no-subscriber", |b| {
            b.iter(|| {
                tx.publish(frame(&p, i)).expect("open");
                i += 1;
            })
        });
    }
    {
        let handle = arcly_stream::bus::StreamHandle::new("live".into(), "b".into(), FRAMES * 2);
        let _stalled = handle.subscribe_resilient();
        let mut i = 0;
        g.bench_function("arcly-stream-0.1.5", |b| {
            b.iter(|| {
                handle.publish_frame(seed_frame(&p, i)).expect("open");
                i += 1;
            })
        });
    }
    {
        let (tx, _stalled) = tokio::sync::broadcast::channel::<MediaFrame>(FRAMES * 2);
        let mut i = 0;
        g.bench_function("tokio-broadcast", |b| {
            b.iter(|| {
                tx.send(frame(&p, i)).expect("receiver");
                i += 1;
            })
        });
    }
    g.finish();
}

/// Heap bytes per idle subscriber, measured with the counting allocator over
/// 10,000 subscriptions to one stream (printed, not timed).
fn memory_per_idle_subscriber(_c: &mut Criterion) {
    const N: usize = 10_000;
    let measure = |make: &dyn Fn() -> Box<dyn std::any::Any>| {
        let before = LIVE.load(Ordering::SeqCst);
        let held: Vec<Box<dyn std::any::Any>> = (0..N).map(|_| make()).collect();
        let after = LIVE.load(Ordering::SeqCst);
        drop(held);
        // Each Box<dyn Any> adds 16 bytes of vector slot; the Box itself
        // holds the subscription, whose size is counted once.
        (after - before) as f64 / N as f64 - 16.0
    };
    let (_tx, bus) = bus::channel(BusConfig {
        max_subscribers: 16_384,
        ..arcly_cfg(N)
    });
    let ours = measure(&|| Box::new(bus.subscribe().expect("room")));
    let handle = arcly_stream::bus::StreamHandle::new("live".into(), "m".into(), 1024);
    let seed = measure(&|| Box::new(handle.subscribe_resilient()));
    let (btx, _) = tokio::sync::broadcast::channel::<MediaFrame>(1024);
    let bc = measure(&|| Box::new(btx.subscribe()));
    println!(
        "memory per idle subscriber (heap bytes, {N} subscribers): arcly-core {ours:.0}, arcly-stream-0.1.5 {seed:.0}, tokio-broadcast {bc:.0}"
    );
    let _ = Arc::new(());
}

criterion_group!(
    benches,
    memory_per_idle_subscriber,
    publish_with_stalled_subscriber,
    fanout
);
criterion_main!(benches);
