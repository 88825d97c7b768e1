//! A burst of new clients against an echo server (issue #20, item 8): `COUNT` TCP connects
//! (default 10,000) as fast as `THREADS` threads (default 64) can make them, each thread's one
//! after the other, every connect timed from the call to its return. All are held until the
//! last is made, then closed with a reset (SO_LINGER 0), so no TIME_WAIT is left for the next
//! run. A client whose SYN found the server's listen queue full waits for the SYN to be sent
//! again (1 s, then 3 s more): the distribution shows them as a tail past a second.
//!
//! Prints one line of JSON: connects made and failed, how long the burst took, and the connect
//! times' percentiles and maximum in ms, with how many took over a second.
//!
//! Usage: `cargo run --release --example connect_burst -- ADDR [COUNT] [THREADS]`
//! (needs `ulimit -n` above COUNT). `benches/connect_burst.sh` runs it against a fresh server.

use std::{
    net::SocketAddr,
    sync::{Arc, Barrier},
    thread,
    time::{Duration, Instant},
};

use socket2::{Domain, Socket, Type};

/// How long one connect may take before it counts as failed: past two SYN retransmits (1 s,
/// then 3 s more), with room.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

fn main() {
    let mut args = std::env::args().skip(1);
    let addr: SocketAddr = args
        .next()
        .and_then(|a| a.parse().ok())
        .expect("usage: connect_burst ADDR [COUNT] [THREADS]");
    let count: usize = args.next().map_or(10_000, |n| n.parse().expect("COUNT"));
    let threads: usize = args.next().map_or(64, |n| n.parse().expect("THREADS"));
    // Every thread starts at once, and closes only once every thread has made its connects.
    let start = Arc::new(Barrier::new(threads + 1));
    let made = Arc::new(Barrier::new(threads + 1));
    let workers: Vec<_> = (0..threads)
        .map(|i| {
            let share = count / threads + usize::from(i < count % threads);
            let (start, made) = (Arc::clone(&start), Arc::clone(&made));
            thread::spawn(move || {
                let sockets: Vec<Socket> = (0..share)
                    .map(|_| {
                        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)
                            .expect("socket (is ulimit -n above COUNT?)");
                        socket.set_linger(Some(Duration::ZERO)).expect("SO_LINGER");
                        socket
                    })
                    .collect();
                start.wait();
                let mut times = Vec::with_capacity(share);
                let mut failed = 0usize;
                for socket in &sockets {
                    let began = Instant::now();
                    match socket.connect_timeout(&addr.into(), CONNECT_TIMEOUT) {
                        Ok(()) => times.push(began.elapsed()),
                        Err(_) => failed += 1,
                    }
                }
                made.wait();
                drop(sockets);
                (times, failed)
            })
        })
        .collect();
    start.wait();
    let began = Instant::now();
    made.wait();
    let burst = began.elapsed();
    let mut times = Vec::with_capacity(count);
    let mut failed = 0;
    for worker in workers {
        let (mine, not) = worker.join().expect("a connecting thread panicked");
        times.extend(mine);
        failed += not;
    }
    times.sort_unstable();
    let ms = |d: Duration| (d.as_secs_f64() * 1e5).round() / 100.0;
    let pct = |p: f64| {
        times
            .get(((p / 100.0 * times.len() as f64) as usize).min(times.len().saturating_sub(1)))
            .map_or(f64::NAN, |d| ms(*d))
    };
    println!(
        "{{\"connections\": {count}, \"connected\": {}, \"failed\": {failed}, \"burst_ms\": {}, \
         \"p50_ms\": {}, \"p90_ms\": {}, \"p99_ms\": {}, \"p999_ms\": {}, \"max_ms\": {}, \
         \"over_1s\": {}}}",
        times.len(),
        ms(burst),
        pct(50.0),
        pct(90.0),
        pct(99.0),
        pct(99.9),
        times.last().map_or(f64::NAN, |d| ms(*d)),
        times
            .iter()
            .filter(|d| **d > Duration::from_secs(1))
            .count(),
    );
}
