//! Tests of the core's TLS echo and of the TLS configs, a rustls client against the core over
//! real loopback sockets (both non-blocking, driven in turn from one thread, so nothing can hang:
//! every test has a deadline). [`TlsEcho`] here is the smallest readiness backend: it moves the
//! socket's bytes to the core and the core's back, as `serve/connection.rs` does.

use std::{
    io::{self, Read, Write},
    net::{TcpListener, TcpStream},
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use rustls::{ClientConfig, ClientConnection, pki_types::ServerName};

use super::{Echo, Said};
use crate::{
    serve::report::{Leave, Peer},
    tls::{
        ClientOptions, Fingerprint, HandshakeInfo, Identity, PLAINTEXT_CHUNK, ServerOptions,
        Verification, client_config, explain, fixtures::Fixtures, server_config, server_name,
    },
};

/// What a pump of [`TlsEcho`] ends with.
#[derive(Debug, PartialEq, Eq)]
enum Progress {
    /// The socket would block.
    Blocked,
    /// The client is done with and everything went back.
    Finished,
}

/// Why the server side ended: the core's leave.
type EchoError = Leave;

/// The core over one non-blocking socket, pumped by hand.
struct TlsEcho {
    echo: Echo,
    /// The handshake's details, once the core said it completed, until taken.
    info: Option<HandshakeInfo>,
    /// The core's work buffer.
    work: Vec<u8>,
    received: u64,
    echoed: u64,
}

impl TlsEcho {
    fn new(config: Arc<rustls::ServerConfig>) -> Result<Self, String> {
        let peer = Peer::from("127.0.0.1:9".parse::<std::net::SocketAddr>().unwrap());
        let echo = Echo::open(
            peer,
            Some(&config),
            false,
            None,
            Instant::now(),
            &mut |_| {},
        )?;
        Ok(TlsEcho {
            echo,
            info: None,
            work: vec![0; PLAINTEXT_CHUNK],
            received: 0,
            echoed: 0,
        })
    }

    /// Writes what the core holds and reads what the socket has, until it would block.
    fn pump(
        &mut self,
        socket: &mut TcpStream,
        scratch: &mut [u8],
        on_plaintext: &mut dyn FnMut(&[u8]),
    ) -> Result<Progress, Leave> {
        let result = self.pump_inner(socket, scratch, on_plaintext);
        (self.received, self.echoed) = self.echo.totals();
        if result.is_err() {
            let _ = socket.write(self.echo.pending());
        }
        result
    }

    fn pump_inner(
        &mut self,
        socket: &mut TcpStream,
        scratch: &mut [u8],
        on_plaintext: &mut dyn FnMut(&[u8]),
    ) -> Result<Progress, Leave> {
        let info = &mut self.info;
        let mut on = |said: Said<'_>| match said {
            Said::TlsConnected(_, got) => *info = Some(got),
            Said::Received(_, data) => on_plaintext(data),
            Said::Connected(..) => {}
        };
        loop {
            while !self.echo.pending().is_empty() {
                match socket.write(self.echo.pending()) {
                    Ok(n) => self.echo.wrote(n, Instant::now()),
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                        return Ok(Progress::Blocked);
                    }
                    Err(err) => return Err(self.echo.failed(err)),
                }
            }
            if self.echo.has_work() {
                self.echo.advance(&mut self.work, &mut on)?;
                if !self.echo.pending().is_empty() {
                    continue;
                }
            }
            match self.echo.done() {
                Some(Leave::Closed) => return Ok(Progress::Finished),
                Some(leave) => return Err(leave),
                None => {}
            }
            if !self.echo.may_read() {
                return Ok(Progress::Blocked);
            }
            let room = self.echo.read_room().min(scratch.len());
            match socket.read(&mut scratch[..room]) {
                Ok(0) => self
                    .echo
                    .input_ended(&mut self.work, Instant::now(), &mut on)?,
                Ok(n) => {
                    self.echo
                        .receive(&scratch[..n], &mut self.work, Instant::now(), &mut on)?;
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    return Ok(Progress::Blocked);
                }
                Err(err) => return Err(self.echo.failed(err)),
            }
        }
    }

    /// The handshake's details, once.
    fn handshake_info(&mut self) -> Option<HandshakeInfo> {
        self.info.take()
    }

    fn is_handshaking(&self) -> bool {
        self.echo.handshake_started().is_some()
    }

    fn in_flight(&self) -> u64 {
        self.received - self.echoed
    }
}

impl Leave {
    /// The reason in the words of the server's line.
    fn reason(&self) -> String {
        match self {
            Leave::HandshakeFailed(why) | Leave::Tls(why) => why.clone(),
            other => other.to_string(),
        }
    }
}

/// Longest any one exchange may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(20);

/// A small deterministic generator for message sizes and contents (xorshift64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// A connected pair of non-blocking loopback sockets: (client, server).
fn socket_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    client.set_nonblocking(true).unwrap();
    server.set_nonblocking(true).unwrap();
    (client, server)
}

fn server_options(fx: &Fixtures) -> ServerOptions {
    ServerOptions {
        identity: Identity::Files {
            cert: fx.server_cert.clone(),
            key: fx.server_key.clone(),
        },
        client_ca: None,
        alpn: vec![],
    }
}

fn client_options(fx: &Fixtures) -> ClientOptions {
    ClientOptions {
        verification: Verification::Roots {
            extra_ca: Some(fx.ca_cert.clone()),
        },
        cert_and_key: None,
        alpn: vec![],
        resumption: true,
    }
}

fn fixtures() -> (tempfile::TempDir, Fixtures) {
    let dir = tempfile::tempdir().unwrap();
    let fx = Fixtures::write_to(dir.path()).unwrap();
    (dir, fx)
}

/// The client side of a test: a rustls client over its socket, sending `data` in pieces of
/// random size and collecting what comes back.
struct Client {
    conn: ClientConnection,
    socket: TcpStream,
    sent: usize,
    received: Vec<u8>,
    /// The server's close_notify arrived (reader said 0).
    closed: bool,
}

/// A client and the server's echo for the fixtures' localhost certificate, over a fresh
/// loopback socket pair, before the handshake: the fixtures' folder, the client, the echo, the
/// server's socket.
fn localhost_session() -> (tempfile::TempDir, Client, TlsEcho, TcpStream) {
    let (dir, fx) = fixtures();
    let server = server_config(&server_options(&fx)).unwrap();
    let client = client_config(&client_options(&fx)).unwrap();
    let (client_socket, server_socket) = socket_pair();
    let client = Client::new(
        client.config,
        server_name("localhost", None).unwrap(),
        client_socket,
    );
    let echo = TlsEcho::new(server.config).unwrap();
    (dir, client, echo, server_socket)
}

impl Client {
    fn new(config: Arc<ClientConfig>, name: ServerName<'static>, socket: TcpStream) -> Self {
        Client {
            conn: ClientConnection::new(config, name).unwrap(),
            socket,
            sent: 0,
            received: Vec::new(),
            closed: false,
        }
    }

    /// One turn: maybe queue a piece of `data` (and close_notify after the last), write what the
    /// socket takes, read what has come. `read` false: the client does not read (backpressure).
    fn step(&mut self, data: &[u8], rng: &mut Rng, read: bool) -> Result<(), rustls::Error> {
        if !self.conn.is_handshaking() && self.sent < data.len() && !self.conn.wants_write() {
            // rustls takes up to its buffer limit (64 KiB) at once; pieces span records.
            let piece = (rng.next() % 70_000 + 1) as usize;
            let end = (self.sent + piece).min(data.len());
            self.sent += self.conn.writer().write(&data[self.sent..end]).unwrap();
            if self.sent == data.len() {
                self.conn.send_close_notify();
            }
        }
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut self.socket) {
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) => panic!("client write: {err}"),
            }
        }
        if !read {
            return Ok(());
        }
        match self.conn.read_tls(&mut self.socket) {
            Ok(0) => {}
            Ok(_) => {
                self.conn.process_new_packets()?;
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
            Err(err) if err.kind() == io::ErrorKind::ConnectionReset => {}
            Err(err) => panic!("client read: {err}"),
        }
        let mut buf = [0u8; 32 * 1024];
        loop {
            match self.conn.reader().read(&mut buf) {
                Ok(0) => {
                    self.closed = true;
                    break;
                }
                Ok(n) => self.received.extend_from_slice(&buf[..n]),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) => panic!("client reader: {err}"),
            }
        }
        Ok(())
    }
}

/// Runs a handshake (and `data`'s echo) between a client config and a server config. Returns
/// the client's error, the server's error, the server's handshake info and the client.
struct Outcome {
    client: Result<Client, rustls::Error>,
    server: Result<Option<HandshakeInfo>, EchoError>,
}

fn exchange(
    server_config: Arc<rustls::ServerConfig>,
    client_config: Arc<ClientConfig>,
    name: ServerName<'static>,
    data: &[u8],
) -> Outcome {
    let (client_socket, mut server_socket) = socket_pair();
    let mut client = Client::new(client_config, name, client_socket);
    let mut server = TlsEcho::new(server_config).unwrap();
    let mut scratch = vec![0u8; 256 * 1024];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut info = None;
    let mut server_done = false;
    let start = Instant::now();
    let mut server_result = Ok(());
    let mut client_error = None;
    while start.elapsed() < DEADLINE {
        if client_error.is_none()
            && let Err(err) = client.step(data, &mut rng, true)
        {
            client_error = Some(err);
            // Let rustls's alert out, as a real client would.
            let _ = client.conn.write_tls(&mut client.socket);
        }
        if !server_done {
            match server.pump(&mut server_socket, &mut scratch, &mut |_| {}) {
                Ok(Progress::Finished) => server_done = true,
                Ok(_) => {}
                Err(err) => {
                    server_result = Err(err);
                    server_done = true;
                }
            }
            if let Some(got) = server.handshake_info() {
                info = Some(got);
            }
        }
        if server_done && (client.closed || client_error.is_some()) {
            break;
        }
        if server_done && server_result.is_err() {
            // Give the client a few turns to read the alert.
            for _ in 0..100 {
                if let Err(err) = client.step(data, &mut rng, true) {
                    client_error.get_or_insert(err);
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            break;
        }
    }
    assert!(
        start.elapsed() < DEADLINE,
        "the exchange did not finish in time"
    );
    Outcome {
        client: match client_error {
            Some(err) => Err(err),
            None => Ok(client),
        },
        server: server_result.map(|()| info),
    }
}

#[test]
fn echoes_one_mebibyte_in_random_pieces_byte_for_byte() {
    let (_dir, fx) = fixtures();
    let server = server_config(&server_options(&fx)).unwrap();
    let client = client_config(&client_options(&fx)).unwrap();
    let mut rng = Rng(42);
    let data: Vec<u8> = (0..1024 * 1024).map(|_| rng.next() as u8).collect();
    let outcome = exchange(
        server.config,
        client.config,
        server_name("localhost", None).unwrap(),
        &data,
    );
    let client = outcome.client.expect("client");
    let info = outcome.server.expect("server").expect("handshake info");
    let seen = HandshakeInfo::of(&client.conn);
    assert_eq!(
        seen.peer_subject.as_deref(),
        Some("CN=localhost, O=netecho tests")
    );
    assert_eq!(
        (&seen.version, &seen.cipher_suite),
        (&info.version, &info.cipher_suite)
    );
    assert!(client.closed, "the server's close_notify arrived");
    assert_eq!(client.received.len(), data.len());
    assert!(client.received == data, "every byte echoed as sent");
    assert_eq!(info.version, "TLS 1.3");
    assert_eq!(info.peer_subject, None);
}

/// A client config for TLS 1.2 only, trusting the test CA, with the test client certificate.
fn tls12_client(fx: &Fixtures, alpn: &[&str]) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in crate::tls::pem::load_certs(&fx.ca_cert, "CA").unwrap() {
        roots.add(cert).unwrap();
    }
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(
            crate::tls::pem::load_certs(&fx.client_cert, "client").unwrap(),
            crate::tls::pem::load_key(&fx.client_key).unwrap(),
        )
        .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    Arc::new(config)
}

fn mtls_server(fx: &Fixtures) -> Arc<rustls::ServerConfig> {
    let mut options = server_options(fx);
    options.client_ca = Some(fx.ca_cert.clone());
    options.alpn = vec!["echo".into()];
    server_config(&options).unwrap().config
}

#[test]
fn mtls_over_tls12_reports_version_alpn_and_client_subject() {
    let (_dir, fx) = fixtures();
    let outcome = exchange(
        mtls_server(&fx),
        tls12_client(&fx, &["other", "echo"]),
        server_name("127.0.0.1", None).unwrap(),
        b"hello over mTLS\n",
    );
    let client = outcome.client.expect("client");
    assert_eq!(client.received, b"hello over mTLS\n");
    let info = outcome.server.expect("server").expect("info");
    assert_eq!(info.version, "TLS 1.2");
    assert_eq!(info.alpn.as_deref(), Some("echo"));
    assert_eq!(
        info.peer_subject.as_deref(),
        Some("CN=netecho test client, O=netecho tests")
    );
    let line = info.to_string();
    assert!(line.starts_with("TLS 1.2 ECDHE_ECDSA_WITH_"), "{line}");
    assert!(line.ends_with(" alpn echo"), "{line}");
}

#[test]
fn mtls_over_tls13_with_client_options() {
    let (_dir, fx) = fixtures();
    let mut options = client_options(&fx);
    options.cert_and_key = Some((fx.client_cert.clone(), fx.client_key.clone()));
    let client = client_config(&options).unwrap();
    let outcome = exchange(
        mtls_server(&fx),
        client.config,
        server_name("::1", Some("localhost")).unwrap(),
        b"x",
    );
    assert_eq!(outcome.client.expect("client").received, b"x");
    let info = outcome.server.expect("server").expect("info");
    assert_eq!(info.version, "TLS 1.3");
    assert!(info.peer_subject.is_some());
}

#[test]
fn mtls_without_client_certificate_is_refused_on_both_sides() {
    let (_dir, fx) = fixtures();
    let client = client_config(&client_options(&fx)).unwrap();
    let name = server_name("localhost", None).unwrap();
    let outcome = exchange(mtls_server(&fx), client.config, name.clone(), b"x");
    let server_err = outcome.server.expect_err("the server refuses");
    assert_eq!(
        server_err.reason(),
        "no client certificate (--client-ca needs one)"
    );
    let client_err = outcome.client.err().expect("the client hears why");
    let said = explain::client_error(&client_err, &name);
    assert!(said.contains("requires a client certificate"), "{said}");
    assert!(said.contains("--cert FILE --key FILE"), "{said}");
}

#[test]
fn plain_text_to_the_tls_port_is_not_tls() {
    let (_dir, fx) = fixtures();
    let server = server_config(&server_options(&fx)).unwrap();
    let (mut client, mut socket) = socket_pair();
    client.write_all(b"hello, plain TCP here\n").unwrap();
    let mut echo = TlsEcho::new(server.config).unwrap();
    let mut scratch = vec![0u8; 4096];
    let start = Instant::now();
    let err = loop {
        assert!(start.elapsed() < DEADLINE, "no verdict");
        match echo.pump(&mut socket, &mut scratch, &mut |_| panic!("no plaintext")) {
            Ok(Progress::Blocked) => std::thread::sleep(Duration::from_millis(1)),
            Ok(other) => panic!("unexpected {other:?}"),
            Err(err) => break err,
        }
    };
    assert_eq!(err.reason(), "not TLS (plain TCP to a TLS port?)");
}

#[test]
fn a_client_that_does_not_read_is_held_back_with_bounded_memory() {
    let (_dir, mut client, mut echo, mut server_socket) = localhost_session();
    let mut scratch = vec![0u8; 256 * 1024];
    let mut rng = Rng(7);
    let data = vec![b'z'; 64 * 1024 * 1024];
    // Handshake, reading.
    let start = Instant::now();
    while client.conn.is_handshaking() || echo.is_handshaking() {
        assert!(start.elapsed() < DEADLINE);
        client.step(&[], &mut rng, true).unwrap();
        echo.pump(&mut server_socket, &mut scratch, &mut |_| {})
            .unwrap();
    }
    // Then send without reading until nothing moves.
    let mut stalled = 0;
    while stalled < 200 {
        assert!(start.elapsed() < DEADLINE);
        let before = (client.sent, echo.received);
        client.step(&data, &mut rng, false).unwrap();
        let progress = echo
            .pump(&mut server_socket, &mut scratch, &mut |_| {})
            .unwrap();
        assert_ne!(progress, Progress::Finished);
        assert!(echo.in_flight() <= super::HOLD_LIMIT as u64);
        if (client.sent, echo.received) == before {
            stalled += 1;
        } else {
            stalled = 0;
        }
    }
    assert!(client.sent < data.len(), "the client was held back");
    // Backpressure: what the socket refused waits, and nothing is read until it goes.
    assert!(
        !echo.echo.pending().is_empty(),
        "the socket refused the echo"
    );
    assert!(echo.echo.held() <= super::HOLD_LIMIT);
    assert!(echo.received - echo.echoed <= super::HOLD_LIMIT as u64);
}

#[test]
fn client_errors_name_the_fix() {
    let (_dir, fx) = fixtures();
    let localhost = server_name("localhost", None).unwrap();
    let serve = |cert: &Path, key: &Path| {
        server_config(&ServerOptions {
            identity: Identity::Files {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
            },
            client_ca: None,
            alpn: vec![],
        })
        .unwrap()
    };
    let refused = |server: &crate::tls::ServerSetup, options: &ClientOptions| {
        let client = client_config(options).unwrap();
        let outcome = exchange(
            server.config.clone(),
            client.config,
            localhost.clone(),
            b"x",
        );
        let err = outcome.client.err().expect("the client refuses");
        assert!(outcome.server.is_err(), "the server hears the refusal");
        explain::client_error(&err, &localhost)
    };

    let expired = serve(&fx.expired_cert, &fx.expired_key);
    let said = refused(&expired, &client_options(&fx));
    assert_eq!(
        said,
        "the server's certificate expired on 2020-01-01 00:00:00 UTC: renew it, or --insecure \
         to test anyway"
    );

    let wrong = serve(&fx.wrong_name_cert, &fx.wrong_name_key);
    let said = refused(&wrong, &client_options(&fx));
    assert_eq!(
        said,
        format!(
            "the server's certificate is not valid for localhost (it is for wrong.example): use \
             --sni with one of those names, or --pin {}",
            wrong.fingerprint
        )
    );

    let good = serve(&fx.server_cert, &fx.server_key);
    let mut no_ca = client_options(&fx);
    no_ca.verification = Verification::Roots { extra_ca: None };
    let said = refused(&good, &no_ca);
    assert!(
        said.starts_with(
            "the server's certificate is not signed by a trusted CA: add the CA with --ca FILE"
        ),
        "{said}"
    );
    assert!(
        said.contains(&format!("--pin {}", good.fingerprint)),
        "{said}"
    );

    let other = Fingerprint::of(&rustls::pki_types::CertificateDer::from(vec![0u8]));
    let mut pinned = client_options(&fx);
    pinned.verification = Verification::Pin(other);
    let said = refused(&good, &pinned);
    assert!(
        said.starts_with(&format!(
            "the server's certificate fingerprint is {}, not the pinned {other}",
            good.fingerprint
        )),
        "{said}"
    );
}

#[test]
fn pin_and_insecure_accept_what_roots_refuse() {
    let (_dir, fx) = fixtures();
    // A throwaway certificate (self-signed, no CA) pinned by its fingerprint.
    let throwaway = server_config(&ServerOptions {
        identity: Identity::SelfSigned { names: vec![] },
        client_ca: None,
        alpn: vec![],
    })
    .unwrap();
    let mut pinned = client_options(&fx);
    pinned.verification = Verification::Pin(throwaway.fingerprint);
    let client = client_config(&pinned).unwrap();
    // The name does not matter to a pin.
    let outcome = exchange(
        throwaway.config,
        client.config,
        server_name("not-on-the-certificate.example", None).unwrap(),
        b"pinned",
    );
    assert_eq!(outcome.client.expect("pinned client").received, b"pinned");

    // --insecure takes even an expired certificate.
    let expired = server_config(&ServerOptions {
        identity: Identity::Files {
            cert: fx.expired_cert.clone(),
            key: fx.expired_key.clone(),
        },
        client_ca: None,
        alpn: vec![],
    })
    .unwrap();
    let mut insecure = client_options(&fx);
    insecure.verification = Verification::Insecure;
    let client = client_config(&insecure).unwrap();
    let outcome = exchange(
        expired.config,
        client.config,
        server_name("localhost", None).unwrap(),
        b"anyway",
    );
    assert_eq!(outcome.client.expect("insecure client").received, b"anyway");
}

#[test]
fn a_client_gone_mid_handshake_finishes_quietly() {
    let (_dir, fx) = fixtures();
    let server = server_config(&server_options(&fx)).unwrap();
    let (client, mut socket) = socket_pair();
    drop(client);
    let mut echo = TlsEcho::new(server.config).unwrap();
    let mut scratch = vec![0u8; 4096];
    let start = Instant::now();
    loop {
        assert!(start.elapsed() < DEADLINE, "no verdict");
        match echo.pump(&mut socket, &mut scratch, &mut |_| {}) {
            Ok(Progress::Finished) => panic!("a client gone mid-handshake is no echo"),
            Ok(_) => std::thread::sleep(Duration::from_millis(1)),
            Err(Leave::NoHandshake) => break,
            Err(err) => panic!("{err}"),
        }
    }
    assert!(echo.is_handshaking());
    assert!(echo.handshake_info().is_none());
}

#[test]
fn tcp_eof_without_close_notify_still_echoes_everything() {
    let (_dir, mut client, mut echo, mut server_socket) = localhost_session();
    let mut scratch = vec![0u8; 256 * 1024];
    let mut rng = Rng(3);
    let start = Instant::now();
    while client.conn.is_handshaking() || echo.is_handshaking() {
        assert!(start.elapsed() < DEADLINE);
        client.step(&[], &mut rng, true).unwrap();
        echo.pump(&mut server_socket, &mut scratch, &mut |_| {})
            .unwrap();
    }
    client.conn.writer().write_all(b"last words").unwrap();
    while client.conn.wants_write() {
        client.conn.write_tls(&mut client.socket).unwrap();
    }
    client.socket.shutdown(std::net::Shutdown::Write).unwrap();
    loop {
        assert!(start.elapsed() < DEADLINE, "no finish");
        match echo.pump(&mut server_socket, &mut scratch, &mut |_| {}) {
            Ok(Progress::Finished) => break,
            Ok(_) => std::thread::sleep(Duration::from_millis(1)),
            Err(err) => panic!("{err}"),
        }
    }
    assert_eq!((echo.received, echo.echoed), (10, 10));
    drop(server_socket);
    while !client.closed {
        assert!(start.elapsed() < DEADLINE, "no close_notify");
        client.step(&[], &mut rng, true).unwrap();
    }
    assert_eq!(client.received, b"last words");
}

#[test]
fn mtls_refusals_over_tls12_and_with_a_foreign_client_certificate() {
    let (_dir, fx) = fixtures();
    let name = server_name("localhost", None).unwrap();

    // TLS 1.2 without a client certificate.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in crate::tls::pem::load_certs(&fx.ca_cert, "CA").unwrap() {
        roots.add(cert).unwrap();
    }
    let no_cert = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let outcome = exchange(mtls_server(&fx), Arc::new(no_cert), name.clone(), b"x");
    assert_eq!(
        outcome.server.expect_err("refused").reason(),
        "no client certificate (--client-ca needs one)"
    );
    let said = explain::client_error(&outcome.client.err().expect("client told"), &name);
    assert!(said.contains("--cert FILE --key FILE"), "{said}");

    // A client certificate the CA did not sign (self-signed).
    let foreign = rcgen::generate_simple_self_signed(vec!["foreign.test".to_string()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("c.crt"), dir.path().join("c.key"));
    std::fs::write(&cert, foreign.cert.pem()).unwrap();
    std::fs::write(&key, foreign.signing_key.serialize_pem()).unwrap();
    let mut options = client_options(&fx);
    options.cert_and_key = Some((cert, key));
    let client = client_config(&options).unwrap();
    let outcome = exchange(mtls_server(&fx), client.config, name.clone(), b"x");
    assert_eq!(
        outcome.server.expect_err("refused").reason(),
        "client certificate not signed by the --client-ca"
    );
    let said = explain::client_error(&outcome.client.err().expect("client told"), &name);
    assert!(
        said.starts_with("the server refused the client certificate"),
        "{said}"
    );
}

#[test]
fn every_key_type_serves_a_pinned_client_over_both_versions() {
    let (_dir, fx) = fixtures();
    for (cert, key) in [
        (&fx.rsa_cert, &fx.rsa_pkcs1_key),
        (&fx.ec_cert, &fx.ec_sec1_key),
        (&fx.ed25519_cert, &fx.ed25519_key),
    ] {
        let server = server_config(&ServerOptions {
            identity: Identity::Files {
                cert: cert.clone(),
                key: key.clone(),
            },
            client_ca: None,
            alpn: vec![],
        })
        .unwrap();
        let mut options = client_options(&fx);
        options.verification = Verification::Pin(server.fingerprint);
        let client = client_config(&options).unwrap();
        let outcome = exchange(
            server.config.clone(),
            client.config,
            server_name("localhost", None).unwrap(),
            b"key types",
        );
        let info = outcome.server.expect("server").expect("info");
        assert_eq!(info.version, "TLS 1.3", "{}", cert.display());
        assert_eq!(outcome.client.expect("client").received, b"key types");
    }
}

/// Drives a [`crate::tls::ClientStream`] against a [`TlsEcho`]: writes `data` in random pieces,
/// reads the echo, sends close_notify at the end. Returns what came back, or the client's error.
fn client_stream_exchange(
    server_config: Arc<rustls::ServerConfig>,
    client_config: Arc<ClientConfig>,
    name: ServerName<'static>,
    data: &[u8],
) -> io::Result<Vec<u8>> {
    let (client_socket, mut server_socket) = socket_pair();
    let conn = ClientConnection::new(client_config, name).unwrap();
    let mut client = crate::tls::ClientStream::new(conn, client_socket);
    let mut echo = TlsEcho::new(server_config).unwrap();
    let mut scratch = vec![0u8; 256 * 1024];
    let mut buf = vec![0u8; 40 * 1024];
    let mut rng = Rng(11);
    let (mut sent, mut received, mut closing, mut server_done) = (0, Vec::new(), false, false);
    let start = Instant::now();
    loop {
        assert!(
            start.elapsed() < DEADLINE,
            "the exchange did not finish in time"
        );
        match client.flush_tls() {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
            Err(err) => return Err(err),
        }
        if sent < data.len() {
            let end = (sent + (rng.next() % 100_000 + 1) as usize).min(data.len());
            match client.write(&data[sent..end]) {
                Ok(n) => sent += n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                Err(err) => return Err(err),
            }
        } else if !closing {
            client.send_close_notify()?;
            closing = true;
        }
        match client.read(&mut buf) {
            Ok(0) => return Ok(received),
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
            Err(err) => return Err(err),
        }
        if !server_done {
            match echo.pump(&mut server_socket, &mut scratch, &mut |_| {}) {
                Ok(Progress::Finished) | Err(_) => server_done = true,
                Ok(_) => {}
            }
        }
    }
}

#[test]
fn client_stream_echoes_one_mebibyte_and_reports_refusals() {
    let (_dir, fx) = fixtures();
    let server = server_config(&server_options(&fx)).unwrap();
    let client = client_config(&client_options(&fx)).unwrap();
    let mut rng = Rng(99);
    let data: Vec<u8> = (0..1024 * 1024).map(|_| rng.next() as u8).collect();
    let name = server_name("localhost", None).unwrap();
    let back =
        client_stream_exchange(server.config.clone(), client.config, name.clone(), &data).unwrap();
    assert!(back == data, "every byte echoed as sent");

    let other = Fingerprint::of(&rustls::pki_types::CertificateDer::from(vec![1u8]));
    let mut pinned = client_options(&fx);
    pinned.verification = Verification::Pin(other);
    let client = client_config(&pinned).unwrap();
    let err = client_stream_exchange(server.config, client.config, name.clone(), b"x").unwrap_err();
    let tls = crate::tls::rustls_error(&err).expect("a rustls error inside");
    let said = explain::client_error(tls, &name);
    assert!(said.contains("not the pinned"), "{said}");
}
