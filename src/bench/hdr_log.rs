//! `bench --hdr-log`: the run as an HdrHistogram interval log, and the reading of one for
//! `bench merge`.
//!
//! The format is the standard one (Java's `HistogramLogWriter`, read by HdrLogProcessing,
//! HistogramLogAnalyzer and the Python and Go readers): comment lines, `#[StartTime: …]` and
//! `#[BaseTime: …]`, then one line per interval and measure,
//! `Tag=latency,START,LENGTH,MAX,BASE64`, the histogram V2-compressed, its values in nanoseconds
//! (the interval's max column in milliseconds, `#[MaxValueDivisor: 1000000.000]`, as the Java
//! writer does). Timestamps are seconds after BaseTime, the agent's scheduled start (its
//! `--start-at`), so the intervals of agents that started together line up.
//!
//! What histograms cannot carry rides in comments that the standard readers skip, one JSON
//! object each, so a log stands alone:
//!
//! - `#netecho-options: {…}` the target and options (the report's settings), which `merge`
//!   requires to be the same in every log;
//! - `#netecho-agent: {…}` who wrote it and when it was to start;
//! - `#netecho-report: {…}` at the end, the agent's whole report (totals, errors, CPU). A log
//!   without it was cut short (the agent killed mid-run), and `merge` refuses it rather than
//!   merge a part.

use std::{
    fs::File,
    io::{BufWriter, Read, Write},
    path::Path,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine as _;
use hdrhistogram::{
    Histogram,
    serialization::{
        Deserializer, Serializer as _, V2DeflateSerializer,
        interval_log::{IntervalLogIterator, IntervalLogWriterBuilder, LogEntry, Tag},
    },
};
use serde::{Deserialize, Serialize};

use super::stats::{BenchReport, Settings, histogram};

/// The tag of message latency: from when due in an open loop, from when sent in a closed one.
pub(crate) const TAG_LATENCY: &str = "latency";
/// Open loop: message latency from when sent (wrk2's uncorrected figure).
pub(crate) const TAG_UNCORRECTED: &str = "latency-uncorrected";
/// Connect latency (without TLS).
pub(crate) const TAG_CONNECT: &str = "connect";
/// Connect and TLS handshake latency.
pub(crate) const TAG_HANDSHAKE: &str = "handshake";
/// The comment prefixes of netecho's own lines.
const OPTIONS: &str = "netecho-options: ";
const AGENT: &str = "netecho-agent: ";
const REPORT: &str = "netecho-report: ";
/// The interval max column is in milliseconds (values are nanoseconds), as Java writes it.
const MAX_VALUE_DIVISOR: f64 = 1e6;
/// Largest log `merge` reads: an hour of one-second intervals of every measure is a few MiB;
/// this leaves room for days, and refuses a wrong file (a disk image) before reading it all.
pub(crate) const MAX_LOG_BYTES: u64 = 512 << 20;

/// Who wrote a log, and when its load was to begin.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct AgentInfo {
    /// `host:pid`: tells the agents of one run apart.
    pub(crate) agent: String,
    /// The scheduled start (`--start-at`, or when the load began), Unix seconds: BaseTime.
    pub(crate) base_unix_s: f64,
    /// When this agent's measured load began, Unix seconds: StartTime (later than the base
    /// when the agent was ready late).
    pub(crate) start_unix_s: f64,
    /// Seconds between intervals.
    pub(crate) interval_s: f64,
    /// `--bind`: how many source addresses the agent spread over (0: the kernel's choice).
    pub(crate) sources: usize,
}

/// The writing side, owned by the interval collector. The file is created before the run (a
/// path that cannot be written fails at once); the header waits for the first interval, which
/// knows when the load began.
pub(crate) struct LogWriter {
    /// The file, buffered: a line per interval and measure.
    out: BufWriter<File>,
    /// The options line, ready.
    options: String,
    /// Who writes; its times are set when the header is written.
    agent: AgentInfo,
    /// The target, for the first comment.
    target: String,
    /// The header is out.
    begun: bool,
    /// Compressed V2, the encoding the standard readers expect.
    serializer: V2DeflateSerializer,
    /// A histogram's bytes, reused.
    encoded: Vec<u8>,
}

impl LogWriter {
    /// Creates the file.
    pub(crate) fn create(path: &Path, settings: &Settings, agent: AgentInfo) -> Result<Self> {
        let file = File::create(path)
            .with_context(|| format!("cannot create --hdr-log {}", path.display()))?;
        Ok(LogWriter {
            out: BufWriter::new(file),
            options: serde_json::to_string(settings).context("cannot describe the options")?,
            agent,
            target: settings.target.clone(),
            begun: false,
            serializer: V2DeflateSerializer::new(),
            encoded: Vec::new(),
        })
    }

    /// Writes the header: the load was to begin at `base` and began at `start`.
    pub(crate) fn begin(&mut self, base: SystemTime, start: SystemTime) -> Result<()> {
        if self.begun {
            return Ok(());
        }
        self.begun = true;
        self.agent.base_unix_s = unix_seconds(base);
        self.agent.start_unix_s = unix_seconds(start.max(base));
        let who = serde_json::to_string(&self.agent).context("cannot describe the agent")?;
        let mut serializer = V2DeflateSerializer::new();
        IntervalLogWriterBuilder::new()
            .add_comment(&format!(
                "netecho bench latency log: agent {}, target {}, values in nanoseconds",
                self.agent.agent, self.target
            ))
            .add_comment(&format!("{OPTIONS}{}", self.options))
            .add_comment(&format!("{AGENT}{who}"))
            .with_start_time(unix(self.agent.start_unix_s))
            .with_base_time(unix(self.agent.base_unix_s))
            .with_max_value_divisor(MAX_VALUE_DIVISOR)
            .begin_log_with(&mut self.out, &mut serializer)
            .context("cannot write the --hdr-log")?;
        Ok(())
    }

    /// One interval of one measure: `start` after the base, `length` long, as the standard
    /// line `Tag=T,START,LENGTH,MAX,BASE64`. Empty histograms are written too, so every
    /// interval shows, even one without a reply.
    pub(crate) fn interval(
        &mut self,
        tag: &str,
        start: Duration,
        length: Duration,
        histogram: &Histogram<u64>,
    ) -> Result<()> {
        let tag = Tag::new(tag).ok_or_else(|| anyhow!("a tag without spaces or commas"))?;
        self.encoded.clear();
        self.serializer
            .serialize(histogram, &mut self.encoded)
            .map_err(|err| anyhow!("cannot encode a histogram: {err:?}"))?;
        let base64 = base64::engine::general_purpose::STANDARD.encode(&self.encoded);
        writeln!(
            self.out,
            "Tag={},{:.3},{:.3},{:.3},{base64}",
            tag.as_str(),
            start.as_secs_f64(),
            length.as_secs_f64(),
            histogram.max() as f64 / MAX_VALUE_DIVISOR
        )
        .context("cannot write the --hdr-log")
    }

    /// The agent's report, the last line: the log is whole.
    pub(crate) fn finish(mut self, report: &BenchReport) -> Result<()> {
        let now = SystemTime::now();
        self.begin(now, now)?;
        let json = serde_json::to_string(report).context("cannot describe the report")?;
        writeln!(self.out, "#{REPORT}{json}")
            .and_then(|()| self.out.flush())
            .context("cannot write the --hdr-log")
    }
}

/// `seconds` after the epoch.
fn unix(seconds: f64) -> SystemTime {
    UNIX_EPOCH + Duration::try_from_secs_f64(seconds.max(0.0)).unwrap_or_default()
}

/// Seconds after the epoch of `at`.
pub(crate) fn unix_seconds(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64())
}

/// One interval of one measure, read back.
pub(crate) struct Interval {
    /// Its tag ([`TAG_LATENCY`], ...).
    pub(crate) tag: String,
    /// Seconds after the base (the log's BaseTime).
    pub(crate) start_s: f64,
    /// Its length in seconds.
    pub(crate) length_s: f64,
    /// Its values, in nanoseconds.
    pub(crate) histogram: Histogram<u64>,
}

/// A whole log, read back.
pub(crate) struct AgentLog {
    /// The target and options.
    pub(crate) settings: Settings,
    /// Who wrote it.
    pub(crate) agent: AgentInfo,
    /// Its intervals, in the order written.
    pub(crate) intervals: Vec<Interval>,
    /// The agent's report.
    pub(crate) report: BenchReport,
}

impl AgentLog {
    /// Reads and checks a log; the error says what is wrong with it in words.
    pub(crate) fn read(path: &Path) -> Result<Self> {
        let name = path.display();
        let file = File::open(path).with_context(|| format!("cannot open {name}"))?;
        let mut text = Vec::new();
        file.take(MAX_LOG_BYTES + 1)
            .read_to_end(&mut text)
            .with_context(|| format!("cannot read {name}"))?;
        if text.len() as u64 > MAX_LOG_BYTES {
            bail!(
                "{name} is larger than {} MiB: not a bench log, or a run far longer than this \
                 merge reads",
                MAX_LOG_BYTES >> 20
            );
        }
        let text = String::from_utf8(text)
            .map_err(|_| anyhow!("{name} is not a netecho bench log (not text)"))?;
        let comment = |prefix: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix('#')?.strip_prefix(prefix))
        };
        let foreign = || {
            anyhow!(
                "{name} is not a netecho bench log (no '#{OPTIONS}' line): give the files that \
                 'netecho bench --hdr-log' wrote"
            )
        };
        let settings: Settings = serde_json::from_str(comment(OPTIONS).ok_or_else(foreign)?)
            .with_context(|| format!("{name}: its options line is damaged"))?;
        let agent: AgentInfo = serde_json::from_str(comment(AGENT).ok_or_else(foreign)?)
            .with_context(|| format!("{name}: its agent line is damaged"))?;
        let report = comment(REPORT).ok_or_else(|| {
            anyhow!(
                "{name} is cut short: it has no '#{REPORT}' line at its end (the agent was \
                 stopped, or the file not copied in full); run that agent again"
            )
        })?;
        let report: BenchReport = serde_json::from_str(report)
            .with_context(|| format!("{name}: its report line is damaged"))?;
        let mut intervals = Vec::new();
        let mut deserializer = Deserializer::new();
        for (number, entry) in IntervalLogIterator::new(text.as_bytes()).enumerate() {
            let entry = entry.map_err(|err| {
                anyhow!(
                    "{name}: entry {} is not an interval log line ({err:?})",
                    number + 1
                )
            })?;
            let LogEntry::Interval(interval) = entry else {
                continue;
            };
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(interval.encoded_histogram())
                .with_context(|| format!("{name}: a histogram is not base64"))?;
            let read: Histogram<u64> = deserializer
                .deserialize(&mut bytes.as_slice())
                .map_err(|err| anyhow!("{name}: a histogram cannot be read ({err:?})"))?;
            // Into the run's shape, so that every histogram adds exactly to every other.
            let mut histogram = histogram()?;
            histogram
                .add(&read)
                .map_err(|err| anyhow!("{name}: a histogram is out of range ({err:?})"))?;
            intervals.push(Interval {
                tag: interval
                    .tag()
                    .map(|t| t.as_str().to_string())
                    .unwrap_or_default(),
                start_s: interval.start_timestamp().as_secs_f64(),
                length_s: interval.duration().as_secs_f64(),
                histogram,
            });
        }
        Ok(AgentLog {
            settings,
            agent,
            intervals,
            report,
        })
    }

    /// The sum of every interval of `tag`.
    pub(crate) fn total(&self, tag: &str) -> Result<Histogram<u64>> {
        let mut total = histogram()?;
        for interval in self.intervals.iter().filter(|i| i.tag == tag) {
            total
                .add(&interval.histogram)
                .context("cannot add intervals")?;
        }
        Ok(total)
    }
}
