//! Errors that carry an exit code of their own.
//!
//! Every other error is a runtime failure (exit 1). A usage error found after clap has parsed the
//! command line (a range given backwards, say) is wrapped in [`UsageError`] so it exits with 2,
//! like the errors clap reports itself.

use std::fmt;

/// Exit code of a runtime failure.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code of a usage error, the same that clap uses.
pub const EXIT_USAGE: u8 = 2;

/// A command line that parsed but makes no sense; reported like a clap error, exit 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// The exit code for an error that ends the program.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    if err.chain().any(|cause| cause.is::<UsageError>()) {
        EXIT_USAGE
    } else {
        EXIT_FAILURE
    }
}
