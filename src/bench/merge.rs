//! `netecho bench merge`: one report from many agents' `--hdr-log` files.
//!
//! Percentiles come from the agents' histograms added together, which is exact (the same as
//! one histogram of every value: all have one shape, [`histogram`]); averaging percentiles, as
//! some tools do, is wrong. Totals are sums. Rates are over the *common interval*, from the
//! latest agent's start to the earliest agent's end, so an agent that ran longer or began late
//! does not inflate them: each agent's messages are counted in that interval, its intervals that
//! straddle an edge in proportion to their overlap. Logs of different targets or options are
//! refused, naming the option that differs.

use std::{fs, path::PathBuf};

use anyhow::{Context, Result, anyhow, bail};

use super::{
    hdr_log::{AgentLog, TAG_CONNECT, TAG_HANDSHAKE, TAG_LATENCY, TAG_UNCORRECTED},
    stats::{AgentRow, BenchReport, Latency, histogram},
};
use crate::{cli::BenchMergeArgs, error::UsageError};

/// What a directory's logs end with, for `merge DIR`.
const LOG_EXTENSION: &str = "hlog";

/// Runs `netecho bench merge`.
pub(crate) fn run(args: &BenchMergeArgs) -> Result<()> {
    let files = expand(&args.files)?;
    let mut logs = Vec::with_capacity(files.len());
    for path in &files {
        logs.push(AgentLog::read(path).map_err(|err| anyhow!(UsageError(format!("{err:#}"))))?);
    }
    let names: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    let report = merge(&logs, &names)?;
    report.print(args.json)?;
    match report.failure() {
        Some(why) => bail!("merged run failed: {why}"),
        None => Ok(()),
    }
}

/// The merged report of `logs` (read from the files `names`).
pub(crate) fn merge(logs: &[AgentLog], names: &[String]) -> Result<BenchReport> {
    let Some(first) = logs.first() else {
        bail!(UsageError(
            "no log to merge: give the agents' --hdr-log files".to_string()
        ));
    };
    for (log, name) in logs.iter().zip(names).skip(1) {
        if let Some(what) = difference(&first.settings, &log.settings) {
            bail!(UsageError(format!(
                "{name} is of another run than {}: {what}. Merge only the logs of agents run \
                 with the same target and options",
                names[0]
            )));
        }
    }
    // The common interval, in Unix seconds: each agent from its start to the end of what it
    // measured.
    let starts = logs.iter().map(|l| l.agent.start_unix_s);
    let ends = logs
        .iter()
        .map(|l| l.agent.start_unix_s + l.report.elapsed_s);
    let common_from = starts.fold(f64::MIN, f64::max);
    let common_to = ends.fold(f64::MAX, f64::min);
    let common = common_to - common_from;
    if common <= 0.0 && logs.len() > 1 {
        bail!(UsageError(format!(
            "the agents' measured times do not overlap (the latest began {:.2} s after the \
             earliest ended): start them with one --start-at",
            -common
        )));
    }

    let mut latency = histogram()?;
    let mut uncorrected = histogram()?;
    let mut setup = histogram()?;
    let mut in_common = 0.0;
    let mut agents = Vec::with_capacity(logs.len());
    let mut reports = logs.iter().map(|l| &l.report);
    let Some(base) = reports.next() else {
        bail!("no log to merge");
    };
    let mut merged = base.clone();
    for report in reports {
        merged.add_totals(report);
    }
    for (log, name) in logs.iter().zip(names) {
        let own = log.total(TAG_LATENCY)?;
        latency.add(&own).map_err(|e| anyhow!("{e:?}"))?;
        uncorrected
            .add(&log.total(TAG_UNCORRECTED)?)
            .map_err(|e| anyhow!("{e:?}"))?;
        let setup_tag = if log.settings.tls {
            TAG_HANDSHAKE
        } else {
            TAG_CONNECT
        };
        setup
            .add(&log.total(setup_tag)?)
            .map_err(|e| anyhow!("{e:?}"))?;
        // This agent's share of the common interval: its intervals' samples in it, scaled to
        // its count of verified replies.
        let mut samples_in = 0.0;
        for interval in log.intervals.iter().filter(|i| i.tag == TAG_LATENCY) {
            let from = log.agent.base_unix_s + interval.start_s;
            let to = from + interval.length_s;
            let overlap = (to.min(common_to) - from.max(common_from)).max(0.0);
            let share = if interval.length_s > 0.0 {
                overlap / interval.length_s
            } else {
                f64::from(u8::from(from >= common_from && from <= common_to))
            };
            samples_in += share * interval.histogram.len() as f64;
        }
        let samples = own.len() as f64;
        if samples > 0.0 {
            in_common += log.report.messages as f64 * samples_in / samples;
        }
        agents.push(AgentRow {
            agent: log.agent.agent.clone(),
            file: name.clone(),
            messages: log.report.messages,
            msgs_per_sec: log.report.msgs_per_sec,
            p99_us: Latency::of(&own).p99,
            errors: log.report.errors.total() + log.report.lost,
            cpu_s: log.report.cpu_s,
            start_late_s: log.report.start_late_s,
        });
    }
    let rate = if common > 0.0 {
        in_common / common
    } else {
        0.0
    };
    let size = merged.settings.size as f64;
    merged.elapsed_s = common.max(0.0);
    merged.msgs_per_sec = rate;
    merged.mib_per_sec = rate * size / (1024.0 * 1024.0);
    merged.bits_per_sec = rate * size * 8.0;
    merged.latency_us = Latency::of(&latency);
    merged.latency_uncorrected_us = (merged.settings.rate.is_some() && !uncorrected.is_empty())
        .then(|| Latency::of(&uncorrected));
    merged.handshake_latency_us = Latency::of(&setup);
    merged.set_cpu(merged.cpu_s);
    merged.start_late_s = None;
    merged.agents = agents;
    Ok(merged)
}

/// The files to read: each file given, and for each directory its `*.hlog` files in name order
/// (a container without a shell, as in contrib/kubernetes/, has no glob). A directory without
/// one is a usage error.
fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        if !path.is_dir() {
            files.push(path.clone());
            continue;
        }
        let mut found: Vec<PathBuf> = fs::read_dir(path)
            .with_context(|| format!("cannot list {}", path.display()))?
            .filter_map(|entry| Some(entry.ok()?.path()))
            .filter(|file| file.extension().is_some_and(|ext| ext == LOG_EXTENSION))
            .collect();
        if found.is_empty() {
            bail!(UsageError(format!(
                "{} has no .{LOG_EXTENSION} file: give the agents' --hdr-log files, or the \
                 directory they wrote them to",
                path.display()
            )));
        }
        found.sort();
        files.extend(found);
    }
    Ok(files)
}

/// The first option in which two logs' settings differ, in words.
fn difference(a: &super::stats::Settings, b: &super::stats::Settings) -> Option<String> {
    let (a, b) = (serde_json::to_value(a).ok()?, serde_json::to_value(b).ok()?);
    let (a, b) = (a.as_object()?, b.as_object()?);
    a.iter().find_map(|(key, value)| {
        let other = b.get(key).unwrap_or(&serde_json::Value::Null);
        (other != value).then(|| format!("its {key} is {other}, not {value}"))
    })
}
