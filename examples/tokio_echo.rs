//! The reference echo server of the benchmark (`benches/`): the idiomatic tokio version, one
//! task per connection on a current-thread runtime, `read` then `write_all` with a 16 KiB
//! buffer. It prints `listening on ADDR` first, like `netecho serve`, so the same harness drives
//! both, and stops on SIGINT/SIGTERM.
//!
//! Usage: `cargo run --release --example tokio_echo -- [ADDR]` (default 127.0.0.1:0).

use std::io::Write;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    signal::unix::{SignalKind, signal},
};

/// Bytes read per `read` call, per connection: the usual choice in tokio examples.
const BUFFER_SIZE: usize = 16 * 1024;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_string());
    let listener = TcpListener::bind(&addr).await?;
    println!("listening on {}", listener.local_addr()?);
    std::io::stdout().flush()?;
    let mut terminate = signal(SignalKind::terminate())?;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                tokio::spawn(echo(stream));
            }
            _ = terminate.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    Ok(())
}

/// Echoes one connection until EOF or an error.
async fn echo(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut buffer = vec![0u8; BUFFER_SIZE];
    loop {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if stream.write_all(&buffer[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}
