//! The name a server goes by (`serve --id`, env `NETECHO_ID`; issue #22): on its first line, in
//! every JSON event, in the metrics (`target_info`) and in the `--hello` line, so that a client
//! behind a load balancer can tell which backend answered. Without one, the host name.

use std::{fs, sync::Arc};

use crate::cli::{MAX_ID_LEN, ServeArgs};

/// Where the kernel keeps the machine's host name (what `hostname` prints; in a pod, its name).
const HOSTNAME_FILE: &str = "/proc/sys/kernel/hostname";

/// The name when neither `--id` nor a host name is there to be had.
const FALLBACK: &str = "netecho";

/// The server's name: `--id` (checked by the command line), else the host name, else
/// `netecho`. Shared by every loop, so an `Arc`.
pub(crate) fn of(args: &ServeArgs) -> Arc<str> {
    match &args.identity.id {
        Some(id) => Arc::from(id.as_str()),
        None => Arc::from(host_name(fs::read_to_string(HOSTNAME_FILE).ok()).as_str()),
    }
}

/// The host name as `--id` would take it: trimmed, and the fallback for one `--id` would refuse
/// (empty, `(none)` is fine but a name with spaces or control characters is not).
fn host_name(read: Option<String>) -> String {
    read.map(|name| name.trim().to_string())
        .filter(|name| {
            !name.is_empty()
                && name.len() <= MAX_ID_LEN
                && !name.chars().any(|c| c.is_whitespace() || c.is_control())
        })
        .unwrap_or_else(|| FALLBACK.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_name_is_trimmed_and_a_bad_one_falls_back() {
        assert_eq!(host_name(Some("box-1\n".into())), "box-1");
        assert_eq!(host_name(Some("\n".into())), FALLBACK);
        assert_eq!(host_name(Some("a b".into())), FALLBACK);
        assert_eq!(host_name(None), FALLBACK);
    }
}
