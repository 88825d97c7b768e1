//! `netecho completions`: shell completion scripts, generated from the clap definition.
//!
//! The script comes from [`clap_complete`] walking [`Cli::command`], so every command and option
//! merged into `cli.rs` is completed without a change here. `--out-dir` writes the scripts under
//! the file names each shell expects (`netecho.bash`, `_netecho`, `netecho.fish`, `netecho.elv`,
//! `_netecho.ps1`); the checked-in `completions/` folder is made that way.

use std::{
    fs,
    io::{self, Write},
    path::Path,
};

use anyhow::{Context, Result};
use clap::{CommandFactory, ValueEnum};
use clap_complete::{Generator, Shell};

use crate::{
    cli::{Cli, CompletionsArgs},
    error::UsageError,
    output,
};

/// Runs `netecho completions`.
pub fn run(args: &CompletionsArgs) -> Result<()> {
    match (&args.out_dir, args.shell) {
        (Some(dir), Some(shell)) => write_to(dir, &[shell]),
        (Some(dir), None) => write_to(dir, Shell::value_variants()),
        (None, Some(shell)) => io::stdout()
            .lock()
            .write_all(&script(shell))
            .map_err(output::stdout_error),
        // clap already requires SHELL unless --out-dir is given; kept as a usage error anyway.
        (None, None) => Err(UsageError("give a SHELL, or --out-dir DIR".to_owned()).into()),
    }
}

/// The completion script for one shell.
pub fn script(shell: Shell) -> Vec<u8> {
    let mut cmd = Cli::command();
    let name = cmd.get_name().to_owned();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, name, &mut script);
    script
}

/// Writes the scripts of `shells` into `dir` under their usual file names.
fn write_to(dir: &Path, shells: &[Shell]) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let name = Cli::command().get_name().to_owned();
    for &shell in shells {
        let path = dir.join(shell.file_name(&name));
        fs::write(&path, script(shell))
            .with_context(|| format!("cannot write {}", path.display()))?;
        crate::status!("wrote {}", path.display());
    }
    Ok(())
}
