//! The backpressure client of the benchmark (built as the example `load`; `benches/run.py`
//! drives it).
//!
//! Every other case of the benchmark runs `netecho bench`. This one cannot: it needs a client
//! that sends and never reads, so that the server's writes back to it block and the server must
//! stop reading from it rather than buffer without bound. `netecho bench` reads every echo by
//! design (it checks every byte), hence this small client.
//!
//! ```text
//! load ADDR BYTES SECONDS  # one connection: send up to BYTES for SECONDS, read nothing
//! ```
//!
//! It prints one line, `sent=N secs=S`: how many bytes the server took in before its receive
//! buffer (and the client's own) filled up.

use std::{
    io::{self, Write},
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};

/// Largest single write.
const CHUNK: usize = 256 * 1024;
/// How long a blocked write waits before the deadline is checked again.
const WRITE_WAIT: Duration = Duration::from_millis(100);

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| -> Result<&str> {
        args.get(i)
            .map(String::as_str)
            .with_context(|| format!("missing argument {i}; see the usage in benches/load.rs"))
    };
    let addr: SocketAddr = arg(0)?.parse().context("ADDR")?;
    let bytes: u64 = arg(1)?.parse().context("BYTES")?;
    let duration = Duration::from_secs_f64(arg(2)?.parse().context("SECONDS")?);

    let mut stream = TcpStream::connect(addr).context("connect")?;
    stream.set_nodelay(true)?;
    // A blocked write gives up after WRITE_WAIT, so the run ends on time.
    stream.set_write_timeout(Some(WRITE_WAIT))?;
    // The content does not matter: nothing is read back.
    let chunk = vec![0x5a_u8; CHUNK];
    let end = Instant::now() + duration;
    let mut sent: u64 = 0;
    while Instant::now() < end && sent < bytes {
        let len = (bytes - sent).min(CHUNK as u64) as usize;
        match stream.write(&chunk[..len]) {
            Ok(n) => sent += n as u64,
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(err) => return Err(err).context("write"),
        }
    }
    // Hold the connection, unread, until the end, so the server's peak is measured under load.
    std::thread::sleep(end.saturating_duration_since(Instant::now()));
    println!("sent={sent} secs={:.1}", duration.as_secs_f64());
    Ok(())
}
