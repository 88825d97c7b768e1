//! Whether io_uring can run the loop on this machine, asked once at start the way the loop will
//! use it: a ring with the same flags (SINGLE_ISSUER | DEFER_TASKRUN, or COOP_TASKRUN on older
//! kernels), a provided-buffer ring registered, and every opcode the loop submits. Any refusal
//! (ENOSYS on kernels built without it, EPERM from seccomp in containers and CI runners or from
//! `kernel.io_uring_disabled`, EINVAL on kernels too old for a flag) comes back as a short reason
//! for the backend line (`multiplexing on epoll (io_uring unavailable: REASON)`) or for `--io uring`'s error.
//!
//! Inside a container the refusal is almost always the runtime's default seccomp profile
//! (podman's answers ENOSYS, Docker's EPERM), not the kernel: when this process runs under a
//! seccomp filter (`Seccomp: 2` in /proc/self/status) the reason says so, and one line on stderr
//! gives the fix ([`SECCOMP_FIX`]).
//!
//! For tests only: [`FORCE_FAILURE`] set to `1` in the environment makes the probe fail as a
//! locked-down kernel would, so the fallback path runs on any machine. It is not documented in
//! `--help`: nothing but the test suite should set it.

use io_uring::opcode;

use super::ring::{Ring, TaskRun};
use crate::output::status;

/// The environment variable that makes the probe fail (tests only, see the module docs).
pub(crate) const FORCE_FAILURE: &str = "NETECHO_IO_URING_FAIL";

/// The most columns a reason takes: the backend line,
/// `multiplexing on epoll (io_uring unavailable: REASON)`, stays within 80.
const REASON_WIDTH: usize = 34;

/// What to do when a seccomp filter refuses io_uring, said once on stderr.
pub(crate) const SECCOMP_FIX: &str = "netecho: io_uring is refused by this process's seccomp filter \
    (container runtimes apply one by default), so the event loop runs on epoll. To allow \
    io_uring, run the container with --security-opt seccomp=unconfined, or with a profile that \
    allows io_uring_setup, io_uring_enter and io_uring_register (Kubernetes: the pod's \
    securityContext.seccompProfile, type Unconfined or a Localhost profile); to skip the try, \
    --io epoll (NETECHO_IO=epoll)";

/// Submission entries of the probe's ring: the flags are what matters, not the size.
const PROBE_ENTRIES: u32 = 8;

/// Provided buffers of the probe's ring.
const PROBE_BUFFERS: u16 = 2;

/// Tries io_uring as the loop uses it: `Ok` with how completions will run, or why not (a short
/// reason, at most [`REASON_WIDTH`] columns, for the backend line).
pub(crate) fn probe() -> Result<TaskRun, String> {
    if std::env::var_os(FORCE_FAILURE).is_some_and(|value| value == "1") {
        return Err(probe_forced());
    }
    let refused = |err: std::io::Error| {
        let filtered = seccomp_filtered();
        if filtered && matches!(err.raw_os_error(), Some(libc::ENOSYS | libc::EPERM)) {
            status!("{SECCOMP_FIX}");
        }
        reason(&err, filtered)
    };
    let ring = Ring::new(PROBE_ENTRIES, PROBE_BUFFERS, false).map_err(refused)?;
    let needed = [
        opcode::AcceptMulti::CODE,
        opcode::RecvMulti::CODE,
        opcode::Send::CODE,
        opcode::SendMsg::CODE,
        opcode::Close::CODE,
        opcode::AsyncCancel::CODE,
        opcode::PollAdd::CODE,
    ];
    match ring.supports(&needed) {
        Ok(true) => Ok(ring.task_run),
        Ok(false) => Err("the kernel lacks an opcode needed".to_string()),
        Err(err) => Err(refused(err)),
    }
}

/// The reason when the test switch fails the probe.
fn probe_forced() -> String {
    format!("{FORCE_FAILURE}=1 (test)")
}

/// A refused ring setup in words; `seccomp`: this process runs under a seccomp filter.
fn reason(err: &std::io::Error, seccomp: bool) -> String {
    match err.raw_os_error() {
        Some(libc::ENOSYS | libc::EPERM) if seccomp => "blocked by a seccomp profile".to_string(),
        Some(libc::ENOSYS) => "not in this kernel (ENOSYS)".to_string(),
        Some(libc::EPERM) if disabled_by_sysctl() => "kernel.io_uring_disabled is set".to_string(),
        Some(libc::EPERM) => "EPERM: seccomp or a container?".to_string(),
        Some(libc::EINVAL) => "kernel too old (EINVAL at setup)".to_string(),
        Some(libc::ENOMEM) => "cannot lock memory (ENOMEM)".to_string(),
        _ => {
            let mut text = err.to_string();
            text.truncate(REASON_WIDTH);
            text
        }
    }
}

/// Whether this process runs under a seccomp filter (mode 2 in /proc/self/status), as the
/// processes of a container do unless it runs unconfined.
fn seccomp_filtered() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .any(|line| line.split_whitespace().eq(["Seccomp:", "2"]))
    })
}

/// Whether the `kernel.io_uring_disabled` sysctl forbids io_uring to this process.
fn disabled_by_sysctl() -> bool {
    std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .is_ok_and(|value| value.trim() != "0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_fit_the_backend_line() {
        for errno in [
            libc::ENOSYS,
            libc::EPERM,
            libc::EINVAL,
            libc::ENOMEM,
            libc::EIO,
        ] {
            for seccomp in [false, true] {
                let line = format!(
                    "multiplexing on epoll (io_uring unavailable: {})",
                    reason(&std::io::Error::from_raw_os_error(errno), seccomp)
                );
                assert!(line.len() <= crate::serve::report::LINE_WIDTH, "{line}");
            }
        }
        for reason in [
            probe_forced(),
            "the kernel lacks an opcode needed".to_string(),
        ] {
            assert!(reason.len() <= REASON_WIDTH, "{reason}");
        }
    }

    #[test]
    fn under_seccomp_the_profile_is_named_not_the_kernel() {
        for errno in [libc::ENOSYS, libc::EPERM] {
            let err = std::io::Error::from_raw_os_error(errno);
            assert_eq!(reason(&err, true), "blocked by a seccomp profile");
        }
        let enosys = std::io::Error::from_raw_os_error(libc::ENOSYS);
        assert_eq!(reason(&enosys, false), "not in this kernel (ENOSYS)");
        assert!(SECCOMP_FIX.contains("--security-opt seccomp=unconfined"));
    }
}
