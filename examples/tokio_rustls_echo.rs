//! The TLS reference echo server of the benchmark (`benches/`): the idiomatic tokio-rustls
//! version, one task per connection on a current-thread runtime, `read` then `write_all` with a
//! 16 KiB buffer, like examples/tokio_echo.rs. Same certificate options as `netecho serve --tls`
//! (`--cert FILE --key FILE`, PEM; without them a throwaway self-signed ECDSA P-256 certificate
//! for localhost/127.0.0.1/::1), loaded by netecho's own `tls::server_config`, so both servers
//! present the same certificate and the benchmark compares only the echo. It prints
//! `listening on ADDR` first, then the certificate's fingerprint line, and stops on
//! SIGINT/SIGTERM.
//!
//! Usage: `cargo run --release --features reference --example tokio_rustls_echo --
//! [--cert FILE --key FILE] [ADDR]` (default 127.0.0.1:0).

use std::{io::Write, path::PathBuf};

use anyhow::{Context, Result, bail};
use netecho::tls::{Identity, ServerOptions, server_config};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    signal::unix::{SignalKind, signal},
};
use tokio_rustls::TlsAcceptor;

/// Bytes read per `read` call, per connection: the usual choice in tokio examples.
const BUFFER_SIZE: usize = 16 * 1024;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let (addr, identity) = parse_args()?;
    let setup = server_config(&ServerOptions {
        identity,
        client_ca: None,
        alpn: vec![],
    })?;
    let acceptor = TlsAcceptor::from(setup.config);
    let listener = TcpListener::bind(&addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    println!("listening on {}", listener.local_addr()?);
    println!("certificate {}", setup.fingerprint);
    std::io::stdout().flush()?;
    let mut terminate = signal(SignalKind::terminate())?;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                tokio::spawn(echo(acceptor.clone(), stream));
            }
            _ = terminate.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    Ok(())
}

/// `[--cert FILE --key FILE] [ADDR]`.
fn parse_args() -> Result<(String, Identity)> {
    let mut addr = None;
    let mut cert = None;
    let mut key = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--cert" => cert = Some(PathBuf::from(args.next().context("--cert needs a FILE")?)),
            "--key" => key = Some(PathBuf::from(args.next().context("--key needs a FILE")?)),
            _ if addr.is_none() => addr = Some(arg),
            _ => bail!("usage: tokio_rustls_echo [--cert FILE --key FILE] [ADDR]"),
        }
    }
    let identity = match (cert, key) {
        (Some(cert), Some(key)) => Identity::Files { cert, key },
        (None, None) => Identity::SelfSigned { names: vec![] },
        _ => bail!("--cert and --key go together"),
    };
    Ok((addr.unwrap_or_else(|| "127.0.0.1:0".to_string()), identity))
}

/// Echoes one connection until EOF or an error, then sends close_notify.
async fn echo(acceptor: TlsAcceptor, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let Ok(mut stream) = acceptor.accept(stream).await else {
        return;
    };
    let mut buffer = vec![0u8; BUFFER_SIZE];
    loop {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if stream.write_all(&buffer[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
    let _ = stream.shutdown().await;
}
