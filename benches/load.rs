//! The benchmark's load client (built as the example `load`; `benches/run.py` drives it).
//!
//! One thread, one mio poll, non-blocking sockets: it can hold ten thousand connections on one
//! core. Every byte that comes back is checked against what was sent: each connection sends a
//! fixed pattern (bytes `0..251` repeating, shifted per connection), so checking needs no copy
//! of what went out. It prints one line of `key=value` results. Every mode is bounded in time.
//!
//! ```text
//! load hold   ADDR CONNECTIONS SECONDS SIZE  # each connection: SIZE bytes about once a second
//! load rr     ADDR CONNECTIONS SECONDS SIZE  # request/response, back to back
//! load bulk   ADDR BYTES                     # one connection, send and read back BYTES
//! load stall  ADDR BYTES SECONDS             # one connection, send up to BYTES, read nothing
//! ```

use std::{
    cmp::Reverse,
    collections::BinaryHeap,
    io::{self, Read, Write},
    net::{Shutdown, SocketAddr},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use mio::{Events, Interest, Poll, Token, net::TcpStream};

/// Period of the byte pattern; prime, so a shifted or dropped byte shows.
const PERIOD: usize = 251;
/// Largest single write or read.
const CHUNK: usize = 256 * 1024;
/// Connections being set up at once (the server's backlog is 1024).
const CONNECTING_AT_ONCE: usize = 512;
/// How long connecting everyone may take.
const CONNECT_DEADLINE: Duration = Duration::from_secs(60);
/// Interval between messages of one connection in `hold`.
const HOLD_INTERVAL: Duration = Duration::from_secs(1);

/// One connection's state.
struct Conn {
    stream: TcpStream,
    /// Connected (the non-blocking connect finished).
    up: bool,
    /// Pattern shift of this connection.
    shift: usize,
    /// Bytes sent so far.
    sent: u64,
    /// Bytes received back so far.
    received: u64,
    /// Bytes of the current message still to write.
    to_write: usize,
    /// A message is out and its echo not all back.
    awaiting: bool,
    /// Broken: not used any more.
    dead: bool,
}

/// Counters printed at the end.
#[derive(Default)]
struct Tally {
    /// Messages whose echo came back complete and correct.
    messages: u64,
    /// Connections that broke: a read or write error, an early EOF, or a wrong byte.
    errors: u64,
    /// `hold`: times a message was due while the previous echo was not back yet.
    late: u64,
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| -> Result<&str> {
        args.get(i)
            .map(String::as_str)
            .with_context(|| format!("missing argument {i}; see the usage in benches/load.rs"))
    };
    let mode = arg(0)?;
    let addr: SocketAddr = arg(1)?.parse().context("ADDR")?;
    let pattern: Vec<u8> = (0..CHUNK + PERIOD).map(|i| (i % PERIOD) as u8).collect();
    match mode {
        "hold" | "rr" => {
            let connections: usize = arg(2)?.parse()?;
            let seconds: f64 = arg(3)?.parse()?;
            let size: usize = arg(4)?.parse()?;
            messages(
                mode == "hold",
                addr,
                connections,
                Duration::from_secs_f64(seconds),
                size.min(CHUNK),
                &pattern,
            )
        }
        "bulk" => bulk(addr, arg(2)?.parse()?, &pattern),
        "stall" => stall(
            addr,
            arg(2)?.parse()?,
            Duration::from_secs_f64(arg(3)?.parse()?),
            &pattern,
        ),
        other => bail!("unknown mode {other}"),
    }
}

/// Opens `count` connections, at most [`CONNECTING_AT_ONCE`] in progress.
fn connect_all(poll: &mut Poll, addr: SocketAddr, count: usize) -> Result<Vec<Conn>> {
    let mut conns: Vec<Conn> = Vec::with_capacity(count);
    let mut events = Events::with_capacity(1024);
    let mut connecting = 0;
    let mut up = 0;
    let deadline = Instant::now() + CONNECT_DEADLINE;
    while up < count {
        while conns.len() < count && connecting < CONNECTING_AT_ONCE {
            let mut stream = TcpStream::connect(addr).context("connect")?;
            let token = Token(conns.len());
            poll.registry().register(
                &mut stream,
                token,
                Interest::READABLE | Interest::WRITABLE,
            )?;
            conns.push(Conn {
                stream,
                up: false,
                shift: (conns.len() * 7) % PERIOD,
                sent: 0,
                received: 0,
                to_write: 0,
                awaiting: false,
                dead: false,
            });
            connecting += 1;
        }
        if Instant::now() > deadline {
            bail!("connected only {up} of {count} in {CONNECT_DEADLINE:?}");
        }
        poll.poll(&mut events, Some(Duration::from_millis(100)))?;
        for event in events.iter() {
            let conn = &mut conns[event.token().0];
            if conn.up || !event.is_writable() {
                continue;
            }
            if let Some(err) = conn.stream.take_error()? {
                bail!("connect failed: {err}");
            }
            match conn.stream.peer_addr() {
                Ok(_) => {
                    conn.up = true;
                    let _ = conn.stream.set_nodelay(true);
                    connecting -= 1;
                    up += 1;
                }
                Err(err) if err.kind() == io::ErrorKind::NotConnected => {}
                Err(err) => bail!("connect failed: {err}"),
            }
        }
    }
    Ok(conns)
}

/// Writes what the socket takes of the current message.
fn write_message(conn: &mut Conn, pattern: &[u8]) -> io::Result<()> {
    while conn.to_write > 0 {
        let start = (conn.sent as usize + conn.shift) % PERIOD;
        match conn.stream.write(&pattern[start..start + conn.to_write]) {
            Ok(n) => {
                conn.sent += n as u64;
                conn.to_write -= n;
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

/// Writes chunks until the socket would block or `bytes` have gone out (edge-triggered: no
/// writable event comes unless a write was refused).
fn send_until_blocked(conn: &mut Conn, bytes: u64, pattern: &[u8]) -> io::Result<()> {
    while conn.sent < bytes {
        if conn.to_write == 0 {
            conn.to_write = (bytes - conn.sent).min(CHUNK as u64) as usize;
        }
        write_message(conn, pattern)?;
        if conn.to_write > 0 {
            return Ok(());
        }
    }
    Ok(())
}

/// Reads what is there and checks it; the number of bytes read.
fn read_checked(conn: &mut Conn, buffer: &mut [u8], pattern: &[u8]) -> io::Result<u64> {
    let mut total = 0;
    loop {
        match conn.stream.read(buffer) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                let start = (conn.received as usize + conn.shift) % PERIOD;
                if buffer[..n] != pattern[start..start + n] {
                    return Err(io::Error::other("echo differs from what was sent"));
                }
                conn.received += n as u64;
                total += n as u64;
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(total),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
}

/// `hold` and `rr`: messages of `size` bytes on `count` connections for `duration`.
fn messages(
    hold: bool,
    addr: SocketAddr,
    count: usize,
    duration: Duration,
    size: usize,
    pattern: &[u8],
) -> Result<()> {
    let mut poll = Poll::new()?;
    let connect_started = Instant::now();
    let mut conns = connect_all(&mut poll, addr, count)?;
    let connect_secs = connect_started.elapsed().as_secs_f64();
    let mut events = Events::with_capacity(1024);
    let mut buffer = vec![0u8; CHUNK];
    let mut tally = Tally::default();
    let start = Instant::now();
    let end = start + duration;

    // Due times of the next message in `hold`, spread evenly over the first interval.
    let mut due: BinaryHeap<Reverse<(Instant, usize)>> = BinaryHeap::new();
    for (index, conn) in conns.iter_mut().enumerate() {
        if hold {
            let phase = HOLD_INTERVAL.mul_f64(index as f64 / count as f64);
            due.push(Reverse((start + phase, index)));
        } else {
            conn.to_write = size;
            conn.awaiting = true;
            if write_message(conn, pattern).is_err() {
                conn.dead = true;
                tally.errors += 1;
            }
        }
    }

    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        while let Some(&Reverse((at, index))) = due.peek() {
            if at > now {
                break;
            }
            due.pop();
            let conn = &mut conns[index];
            if conn.dead {
                continue;
            }
            if conn.awaiting {
                tally.late += 1; // the previous echo is not back yet
            } else {
                conn.to_write = size;
                conn.awaiting = true;
                if write_message(conn, pattern).is_err() {
                    conn.dead = true;
                    tally.errors += 1;
                    continue;
                }
            }
            due.push(Reverse((at + HOLD_INTERVAL, index)));
        }
        let wait = due
            .peek()
            .map(|Reverse((at, _))| at.saturating_duration_since(now))
            .unwrap_or(end - now)
            .min(end - now);
        poll.poll(&mut events, Some(wait))?;
        for event in events.iter() {
            let conn = &mut conns[event.token().0];
            if conn.dead {
                continue;
            }
            let result = write_message(conn, pattern)
                .and_then(|()| read_checked(conn, &mut buffer, pattern));
            match result {
                Ok(_) => {
                    if conn.awaiting && conn.to_write == 0 && conn.received == conn.sent {
                        conn.awaiting = false;
                        tally.messages += 1;
                        // Back to back in rr: the next request at once.
                        if !hold {
                            conn.to_write = size;
                            conn.awaiting = true;
                            if write_message(conn, pattern).is_err() {
                                conn.dead = true;
                                tally.errors += 1;
                            }
                        }
                    }
                }
                Err(_) => {
                    conn.dead = true;
                    tally.errors += 1;
                }
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    // Echoes in flight at the end are not errors; connections still up are counted.
    let alive = conns.iter().filter(|c| c.up && !c.dead).count();
    for conn in &conns {
        let _ = conn.stream.shutdown(Shutdown::Both);
    }
    println!(
        "mode={} connections={count} alive={alive} connect_secs={connect_secs:.2} secs={secs:.2} \
         messages={} msgs_per_sec={:.0} errors={} late={}",
        if hold { "hold" } else { "rr" },
        tally.messages,
        tally.messages as f64 / secs,
        tally.errors,
        tally.late
    );
    Ok(())
}

/// `bulk`: one connection sends `bytes` and reads them back at the same time.
fn bulk(addr: SocketAddr, bytes: u64, pattern: &[u8]) -> Result<()> {
    let mut poll = Poll::new()?;
    let mut conns = connect_all(&mut poll, addr, 1)?;
    let conn = &mut conns[0];
    let mut events = Events::with_capacity(16);
    let mut buffer = vec![0u8; CHUNK];
    let start = Instant::now();
    let deadline = start + Duration::from_secs(120);
    let mut shut = false;
    while conn.received < bytes {
        send_until_blocked(conn, bytes, pattern)?;
        if conn.sent == bytes && !shut {
            conn.stream.shutdown(Shutdown::Write)?;
            shut = true;
        }
        match read_checked(conn, &mut buffer, pattern) {
            // The server closes once all is echoed: the end, if everything came back.
            Err(err) if err.kind() == io::ErrorKind::UnexpectedEof && conn.received >= bytes => {}
            result => {
                result?;
            }
        }
        if conn.received >= bytes {
            break;
        }
        if Instant::now() > deadline {
            bail!("bulk did not finish in time");
        }
        poll.poll(&mut events, Some(Duration::from_secs(1)))?;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "mode=bulk bytes={bytes} secs={secs:.3} mib_per_sec={:.0}",
        bytes as f64 / secs / (1 << 20) as f64
    );
    Ok(())
}

/// `stall`: one connection sends up to `bytes` for `duration`, never reading.
fn stall(addr: SocketAddr, bytes: u64, duration: Duration, pattern: &[u8]) -> Result<()> {
    let mut poll = Poll::new()?;
    let mut conns = connect_all(&mut poll, addr, 1)?;
    let conn = &mut conns[0];
    let mut events = Events::with_capacity(16);
    let end = Instant::now() + duration;
    while Instant::now() < end {
        send_until_blocked(conn, bytes, pattern)?;
        let left = end.saturating_duration_since(Instant::now());
        poll.poll(&mut events, Some(left))?;
    }
    println!(
        "mode=stall sent={} secs={:.1}",
        conn.sent,
        duration.as_secs_f64()
    );
    Ok(())
}
