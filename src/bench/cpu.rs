//! The load generator's own CPU time, so a report shows when the client, not the server, is the
//! limit (as sockperf and iperf3 report theirs).
//!
//! Read from `/proc/self/stat` (user and system time of every thread of the process), which
//! needs no unsafe call (`getrusage` would). Its unit is the kernel's USER_HZ, which the Linux
//! ABI fixes at 100 per second on every architecture (`sysconf(_SC_CLK_TCK)` answers 100), so
//! a figure is good to 10 ms: a run of a few seconds is measured to a few per cent. Elsewhere
//! than Linux there is no figure (zero).

use std::fs;

/// Clock ticks per second of `/proc/*/stat` times: USER_HZ, 100 in the Linux ABI.
const USER_HZ: f64 = 100.0;

/// CPU seconds (user + system) this process has used so far; `None` where /proc has no figure.
pub(crate) fn used() -> Option<f64> {
    let stat = fs::read_to_string("/proc/self/stat").ok()?;
    parse_stat(&stat)
}

/// utime + stime, fields 14 and 15 of a `stat` line, in seconds. The command name (field 2)
/// is in parentheses and may hold spaces, so the count starts after its closing one.
fn parse_stat(stat: &str) -> Option<f64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some((user + system) as f64 / USER_HZ)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_and_system_ticks_are_read_after_the_name() {
        let line = "4242 (net echo) R 1 2 3 4 5 6 7 8 9 10 150 25 0 0 20 0 1 0";
        assert_eq!(parse_stat(line), Some(1.75));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn this_process_has_a_figure() {
        assert!(used().is_some());
    }
}
