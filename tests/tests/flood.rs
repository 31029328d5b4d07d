//! Connection floods against the tokio adapter, in process: sockets that
//! connect and say nothing, and sockets that send garbage, while a stream is
//! published and played. Every connection's task must end (the runtime's
//! live task count comes back to where it was), and the stream must flow.

mod common;

use arcly_core::engine::Engine;
use arcly_rtmp::ClientMode;
use common::*;
use std::io::Write;
use std::time::Duration;

const N: usize = 300;

fn flood(addr: std::net::SocketAddr) -> usize {
    let mut socks = Vec::new();
    for _ in 0..N {
        socks.push(std::net::TcpStream::connect(addr).expect("connect"));
    }
    let mut x = 0x9E3779B97F4A7C15u64;
    for _ in 0..N {
        let mut s = std::net::TcpStream::connect(addr).expect("connect");
        let junk: Vec<u8> = (0..1024)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let _ = s.write_all(&junk);
        socks.push(s);
    }
    std::thread::sleep(Duration::from_millis(500));
    let n = socks.len();
    drop(socks);
    n
}

#[test]
fn flood_leaves_no_memory_behind_and_the_stream_flows() {
    let server = start_rtmp(Adapter::Tokio, Engine::default());
    let mut p = Client::connect(server.addr, ClientMode::Publish, "live", "f");
    assert!(p.until(Duration::from_secs(10), |c| c.seen.streaming));
    let mut c = Client::connect(server.addr, ClientMode::Play, "live", "f");
    assert!(c.until(Duration::from_secs(10), |c| c.seen.streaming));
    let media = frames(300, 30, 1000);
    p.publish_all(tracks(), &media[..100]);
    assert!(c.until(Duration::from_secs(10), |c| c.seen.frames.len() >= 100));
    let rt = server.tokio.clone().expect("tokio adapter");
    let tasks = || rt.metrics().num_alive_tasks();
    let before = tasks();
    flood(server.addr);
    p.publish_all(tracks(), &media[100..]);
    assert!(
        c.until(Duration::from_secs(10), |c| c.seen.frames.len() >= 300),
        "the player got {} of 300 frames during the flood",
        c.seen.frames.len()
    );
    let settled = (0..50).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        tasks() <= before
    });
    assert!(
        settled,
        "{} tasks alive after {} flood connections closed, {before} before",
        tasks(),
        2 * N
    );
    server.shutdown();
}
