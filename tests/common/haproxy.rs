//! A real haproxy in front of netecho servers (`mode tcp`), for the tests of what a load balancer
//! does: started on a free loopback port from a configuration the test writes, awaited until
//! haproxy itself listens (no probing connection, which a balancer would count), and killed by
//! its PID when dropped, also when a test panics.

use std::{
    io::{Read, Write},
    net::SocketAddr,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use super::TIMEOUT;

/// A running `haproxy -db`.
pub struct Haproxy {
    child: Child,
    /// The frontend's address: connect here to go through haproxy.
    pub addr: SocketAddr,
    /// Holds the configuration file for as long as haproxy runs.
    _dir: tempfile::TempDir,
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The configuration of one TCP frontend on loopback `port` and one backend of `servers` (the
/// lines after `backend echo_out`, each `server ...`, and any `balance`); no health checks
/// unless a server line asks (they would be clients of their own).
pub fn config(port: u16, servers: &str) -> String {
    format!(
        "global\n    maxconn 64\n\
         defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 20s\n    \
         timeout server 20s\n\
         frontend echo_in\n    bind 127.0.0.1:{port}\n    default_backend echo_out\n\
         backend echo_out\n{servers}"
    )
}

impl Haproxy {
    /// Starts haproxy with the configuration `config` makes for a free port, and waits (bounded)
    /// until its frontend accepts. The port is found free and released, then haproxy binds it:
    /// another process may take it in between, and then haproxy exits and another is tried.
    pub fn start(config: impl Fn(u16) -> String) -> Haproxy {
        for _ in 0..3 {
            let port = super::unused_port();
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("haproxy.cfg");
            std::fs::write(&file, config(port)).unwrap();
            let child = Command::new("haproxy")
                .arg("-f")
                .arg(&file)
                .arg("-db")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start haproxy");
            let mut proxy = Haproxy {
                child,
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
                _dir: dir,
            };
            if proxy.wait_until_accepting() {
                return proxy;
            }
        }
        panic!("haproxy did not start on any of 3 free ports");
    }

    /// Waits until haproxy itself listens on its frontend (true; a connect could reach another
    /// process that took the port) or exits (false); bounded by [`TIMEOUT`].
    fn wait_until_accepting(&mut self) -> bool {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if super::listens_on(self.child.id(), self.addr.port()) {
                return true;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                let mut stderr = String::new();
                if let Some(mut pipe) = self.child.stderr.take() {
                    let _ = pipe.read_to_string(&mut stderr);
                }
                let _ = writeln!(std::io::stderr(), "haproxy exited ({status}): {stderr}");
                return false;
            }
            assert!(
                Instant::now() < deadline,
                "haproxy did not accept within {TIMEOUT:?}"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}
