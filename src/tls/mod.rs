//! TLS for every command (`--tls`), on rustls with the ring provider.
//!
//! This module takes plain parameters (paths, names, enums), never the clap structs, so the
//! commands wire their options to it and it stays testable on its own:
//!
//! - [`server_config`] (`server.rs`): the server's certificate, from PEM files or a throwaway
//!   self-signed one made at start, client certificates required by `--client-ca`, ALPN and
//!   session resumption; [`ServerSetup`] carries the config and the certificate's fingerprint.
//! - [`client_config`] (`client.rs`): how the client verifies the server (system roots plus
//!   `--ca`, a pinned fingerprint, or `--insecure`), its own certificate for mTLS, ALPN, resumption
//!   on or off; [`server_name`] turns `--sni` or the host typed into the name sent and checked.
//! - [`explain`]: a failed handshake as one sentence that names the fix (client side), or as a
//!   short reason for the server's report ("not TLS (plain TCP to a TLS port?)").
//! - `handshake.rs`: [`HandshakeInfo`], what a handshake settled, and the bounds of the server's
//!   TLS echo (which lives in the server's echo core, `serve/echo/tls.rs`).
//! - [`ClientStream`] (`client_stream.rs`): the client's session read and written like a
//!   non-blocking socket, for the loops of `send` and `bench`.
//! - `pem.rs`: certificates and keys read from PEM files, with errors that name the file.
//! - [`Fingerprint`] (`fingerprint.rs`): SHA-256 of a certificate, as printed and as `--pin` takes it.
//! - `subject.rs`: a certificate's subject as a short line for the report (`CN=alice, O=Example`).
//! - [`fixtures`]: a test CA and certificates made with rcgen, for the tests (hidden from docs).
//!
//! Why ring and not aws-lc-rs: ring builds with a C compiler alone (no cmake, no NASM), and rcgen
//! uses it too, so one crypto library serves both. Both TLS 1.2 and 1.3 are offered.

mod client;
mod client_stream;
pub mod explain;
mod fingerprint;
#[doc(hidden)]
pub mod fixtures;
mod handshake;
pub(crate) mod pem;
mod server;
mod subject;

use std::sync::Arc;

use rustls::crypto::CryptoProvider;

pub use client::{ClientOptions, ClientSetup, Verification, client_config, from_args, server_name};
pub use client_stream::{ClientStream, rustls_error};
pub use fingerprint::Fingerprint;
pub use handshake::{HandshakeInfo, PLAINTEXT_CHUNK, TLS_BUFFER_LIMIT};
pub use server::{Identity, ServerOptions, ServerSetup, server_config};
pub use subject::subject_line;

/// The one crypto provider of every config: ring, with its default cipher suites and groups.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// ALPN protocol names as rustls takes them, from the names the user gave (`--alpn h2,echo`).
fn alpn_protocols(names: &[String]) -> Vec<Vec<u8>> {
    names.iter().map(|name| name.as_bytes().to_vec()).collect()
}
