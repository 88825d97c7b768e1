//! The open-file limit, raised in one place for every command that needs many descriptors:
//! `serve --multiplex` (to the hard limit, then as many clients as it leaves room for) and
//! `bench` (to what its connections need).
//!
//! Every client, and every connection of `bench`, is one descriptor. The soft `RLIMIT_NOFILE` is often 1024 while the hard limit is
//! far higher, so the server raises the soft limit to the hard one first (an unprivileged
//! process may), then derives its default `--max-connections` from what it got, less what the
//! process and each worker loop hold for themselves. Staying under the limit by choice means
//! accept rarely fails with EMFILE; when it does anyway (another thread, a lower limit than
//! expected, ENFILE for the whole system) the loop pauses accepting.

use crate::error::describe;

/// Descriptors kept back from clients (or `bench` connections) for the process as a whole:
/// stdio, the polls and their wakers, the UDP socket, what the libraries may open, with room to
/// spare.
pub(crate) const RESERVE: u64 = 64;

/// Descriptors each worker loop holds for itself: its listener, its poll, and the two ends of
/// its signal pipe.
const FDS_PER_WORKER: u64 = 4;

/// Fewest clients the default allows, even when the descriptor limit is tiny.
const MIN_DEFAULT_CONNECTIONS: u64 = 1;

/// Raises the soft open-file limit towards `wanted`, up to the hard limit (`u64::MAX`: to the hard
/// limit); returns the soft limit now in force, or an error in words when it could be neither
/// raised nor read.
pub(crate) fn raise(wanted: u64) -> Result<u64, String> {
    match rlimit::increase_nofile_limit(wanted) {
        Ok(limit) => Ok(limit),
        Err(err) => match rlimit::getrlimit(rlimit::Resource::NOFILE) {
            Ok((soft, _hard)) => Err(format!(
                "cannot raise the open-file limit ({}); it stays at {soft}",
                describe(&err)
            )),
            Err(read_err) => Err(format!(
                "cannot read the open-file limit: {}",
                describe(&read_err)
            )),
        },
    }
}

/// The default `--max-connections` for a soft descriptor limit and `workers` loops: what is left
/// once the process and every worker have their own descriptors.
pub(crate) fn default_max_connections(fd_limit: u64, workers: u64) -> u64 {
    fd_limit
        .saturating_sub(RESERVE)
        .saturating_sub(FDS_PER_WORKER.saturating_mul(workers))
        .max(MIN_DEFAULT_CONNECTIONS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_keeps_a_reserve() {
        assert_eq!(default_max_connections(20_000, 1), 20_000 - RESERVE - 4);
        assert_eq!(default_max_connections(1024, 1), 1024 - RESERVE - 4);
    }

    #[test]
    fn each_worker_descriptors_are_counted() {
        assert_eq!(default_max_connections(20_000, 8), 20_000 - RESERVE - 8 * 4);
        assert_eq!(
            default_max_connections(20_000, 1) - default_max_connections(20_000, 2),
            FDS_PER_WORKER
        );
    }

    #[test]
    fn default_never_drops_to_zero() {
        assert_eq!(default_max_connections(10, 1), 1);
        assert_eq!(default_max_connections(0, 1024), 1);
    }

    #[test]
    fn raising_sets_the_soft_limit_to_the_hard_one() {
        let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).expect("read the limit");
        let now = raise(u64::MAX).expect("any process may raise its soft limit to its hard one");
        let (soft_after, hard_after) =
            rlimit::getrlimit(rlimit::Resource::NOFILE).expect("read the limit");
        assert_eq!(now, soft_after, "the limit returned is the one in force");
        assert_eq!(hard_after, hard, "the hard limit is left as it was");
        // macOS caps the soft limit lower (kern.maxfilesperproc); Linux lets it reach the hard one.
        #[cfg(target_os = "linux")]
        assert_eq!(now, hard, "the soft limit was raised to the hard one");
    }
}
