//! What the pool's timers cost with many connections: N idle connections
//! (each with a pending idle deadline) and one busy peer that sends a byte
//! every millisecond, so the worker wakes about 1,000 times a second. Prints
//! the process's CPU time over the measured seconds.
//!
//! `cargo run --release -p arcly-blocking --example timer_cost -- 10000`

use arcly_blocking::{serve, Clock, ListenerConfig, ShutdownHandle};
use arcly_core::engine::Engine;
use arcly_core::sim::toy::Inert;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

/// This process's user + system CPU time.
fn cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime); the first after the name is field 3.
    let field = |i: usize| {
        f.get(i - 3)
            .and_then(|x| x.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let ticks = field(14) + field(15);
    Duration::from_millis(ticks * 10)
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let shutdown = ShutdownHandle::new();
    let s2 = shutdown.clone();
    let cfg = ListenerConfig {
        workers: 1,
        max_connections: n + 10,
        handshake_timeout: None,
        idle_timeout: Duration::from_secs(3600),
        ..ListenerConfig::default()
    };
    let server = std::thread::spawn(move || {
        serve(
            listener,
            Engine::default(),
            |_| Inert,
            cfg,
            Clock::new(),
            s2,
            Arc::new(|_| {}),
        )
    });
    let idle: Vec<_> = (0..n)
        .map(|_| std::net::TcpStream::connect(addr).expect("connect"))
        .collect();
    let mut busy = std::net::TcpStream::connect(addr).expect("connect");
    busy.set_nodelay(true).expect("nodelay");
    std::thread::sleep(Duration::from_secs(1));
    let secs = 5;
    let t0 = cpu();
    let start = std::time::Instant::now();
    let mut sent = 0u64;
    while start.elapsed() < Duration::from_secs(secs) {
        busy.write_all(b"x").expect("write");
        sent += 1;
        std::thread::sleep(Duration::from_millis(1));
    }
    let used = cpu() - t0;
    println!(
        "{n} idle connections, {sent} wake-ups in {secs} s: {:.0} ms of CPU ({:.1} us per wake-up)",
        used.as_secs_f64() * 1e3,
        used.as_secs_f64() * 1e6 / sent as f64
    );
    shutdown.trigger();
    drop(idle);
    let _ = server.join();
}
