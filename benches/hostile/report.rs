//! The summary: its rows (figure, value, baseline, ratio, target, note), printed as they are
//! made and again as a table at the end, and the same figures as one JSON line.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::attack::LoopRun;
use crate::bystander::Window;
use crate::child::Gateway;
use crate::client::Outcome;
use crate::cpu::Cpu;
use crate::store::Stored;
use crate::RECOVERY;

/// One line of the summary.
pub struct Row {
    pub figure: String,
    pub value: String,
    pub baseline: String,
    pub ratio: String,
    pub target: &'static str,
    pub note: String,
}

#[derive(Default)]
pub struct Report {
    pub rows: Vec<Row>,
    pub json: Map<String, Value>,
}

impl Report {
    pub fn row(
        &mut self,
        figure: String,
        value: String,
        baseline: String,
        ratio: String,
        target: &'static str,
        note: String,
    ) {
        println!("   -> {figure}: {value} (baseline {baseline}) {ratio} {note}");
        self.rows.push(Row {
            figure,
            value,
            baseline,
            ratio,
            target,
            note,
        });
    }
}

impl Report {
    /// The table of every row, then the JSON line.
    pub fn print(&self) {
        println!("   ratio: RSS rows, extra RSS per extra byte of client JSON over the baseline's");
        println!(
            "   minimal records; loop-time rows, loop time ÷ the 1 ms target; bystander rows,"
        );
        println!("   p99 ÷ its quiet p99 (a bystander row is the window of the attack above it)");
        println!(
            "{:<44} {:>13}  {:<34} {:>15}  {:<14} note",
            "figure", "value", "baseline", "ratio", "target"
        );
        for r in &self.rows {
            println!(
                "{:<44} {:>13}  {:<34} {:>15}  {:<14} {}",
                r.figure, r.value, r.baseline, r.ratio, r.target, r.note
            );
        }
        println!("json: {}", Value::Object(self.json.clone()));
    }
}

pub fn median(v: &[f64]) -> f64 {
    loadgen::median(v)
}

pub fn fmt_ms(ms: f64) -> String {
    if ms.is_finite() {
        format!("{ms:.3} ms")
    } else {
        "n/a".into()
    }
}

pub fn mib(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / (1u64 << 20) as f64)
}

pub fn times(r: f64) -> String {
    if r.is_finite() {
        format!("{r:.2}×")
    } else {
        "n/a".into()
    }
}

/// Counts of what came back, for the report: `agent_info ×15`.
#[derive(Default)]
pub struct Notes(BTreeMap<String, usize>);

impl Notes {
    pub fn add(&mut self, what: impl Into<String>) {
        *self.0.entry(what.into()).or_default() += 1;
    }

    pub fn outcome(&mut self, outcome: &Outcome) {
        match outcome {
            Outcome::Reply {
                kind,
                code: Some(code),
                ..
            } => self.add(format!("{kind} {code}")),
            Outcome::Reply { kind, .. } => self.add(kind.clone()),
            Outcome::Closed(why) => self.add(why.clone()),
            Outcome::Timeout => self.add("no reply"),
            Outcome::Failed(why) => self.add(why.clone()),
        }
    }

    pub fn line(&self) -> String {
        self.0
            .iter()
            .map(|(k, n)| format!("{k} ×{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The rows of a loop-time attack: its loop time, the gateway's CPU per message (over that of
/// a `ping`, `ping`; a count of fewer than `min_ticks` ticks is pointed out) and the
/// bystander's p99.
pub fn loop_rows(
    report: &mut Report,
    key: &str,
    label: &str,
    run: &LoopRun,
    quiet: &Window,
    ping: &Cpu,
    min_ticks: u64,
) {
    let loop_ms = run.loop_ms();
    let ping_ms = median(&run.ping_us) / 1e3;
    let mut note = run.notes.line();
    if let Some(over) = &run.over {
        note = format!("{over}; {note}");
    }
    if run.stuck {
        note = format!(
            "gateway unresponsive {} s after; {note}",
            RECOVERY.as_secs()
        );
    }
    let value = match &run.over {
        Some(over) if over.starts_with("over budget") => {
            format!("over budget ({} done)", run.msg_us.len())
        }
        _ => fmt_ms(loop_ms),
    };
    report.row(
        label.to_owned(),
        value,
        format!("ping {}", fmt_ms(ping_ms)),
        times(loop_ms / 1.0),
        "≤ 1 ms",
        note,
    );
    let cpu_ms = run.cpu.ms_per_rep() - ping.ms_per_rep();
    let few = |cpu: &Cpu, what: &str| {
        (cpu.ticks < min_ticks).then(|| format!("only {} ticks for {what}", cpu.ticks))
    };
    let cpu_note = [few(&run.cpu, "the message"), few(ping, "the ping")]
        .into_iter()
        .flatten()
        .chain(std::iter::once(format!(
            "{} reps, {} ticks",
            run.cpu.reps, run.cpu.ticks
        )))
        .collect::<Vec<_>>()
        .join("; ");
    report.row(
        "  gateway CPU per message".to_owned(),
        fmt_ms(cpu_ms),
        format!("ping cpu {}", fmt_ms(ping.ms_per_rep())),
        times(cpu_ms / 1.0),
        "≤ 1 ms",
        cpu_note,
    );
    bystander_row(report, &run.window, quiet);
    report.json.insert(
        key.to_owned(),
        json!({
            "loop_ms": loadgen::round3(loop_ms),
            "ping_ms": loadgen::round3(ping_ms),
            "cpu_ms": loadgen::round3(cpu_ms),
            "cpu_ticks": run.cpu.ticks,
            "cpu_reps": run.cpu.reps,
            "ping_cpu_ms": loadgen::round3(ping.ms_per_rep()),
            "ping_cpu_ticks": ping.ticks,
            "reps": run.msg_us.len(),
            "over": run.over,
            "stuck": run.stuck,
            "bystander_p99_ms": loadgen::round3(run.window.p99_ms()),
            "notes": run.notes.line(),
        }),
    );
}

pub fn bystander_row(report: &mut Report, window: &Window, quiet: &Window) {
    let figure = "  bystander ping p99, meanwhile".to_owned();
    bystander_row_as(report, figure, window, quiet, String::new());
}

/// [`bystander_row`] under the name `figure`, with `more` after the count of pings.
pub fn bystander_row_as(
    report: &mut Report,
    figure: String,
    window: &Window,
    quiet: &Window,
    more: String,
) {
    let p99 = window.p99_ms();
    report.row(
        figure,
        if window.unanswered {
            format!("≥ {}", fmt_ms(p99))
        } else {
            fmt_ms(p99)
        },
        format!("quiet {}", fmt_ms(quiet.p99_ms())),
        times(p99 / quiet.p99_ms()),
        "≤ 10 ms",
        format!("{} pings{more}", window.rtts_us.len()),
    );
}

/// The RSS row of a kind of stored data: the growth beside the baseline's, and the extra RSS
/// per extra byte of client JSON.
pub fn rss_row<A, B>(
    report: &mut Report,
    key: &str,
    label: &str,
    base: &Stored<A>,
    big: &Stored<B>,
) {
    let extra_rss = big.rss_growth - base.rss_growth;
    let extra_bytes = big.bytes as f64 - base.bytes as f64;
    let per_byte = extra_rss / extra_bytes;
    let per_record = base.rss_growth / base.records.max(1) as f64;
    let mut note = format!(
        "{} records, {} of JSON ({} in the baseline); {}",
        big.records,
        mib(big.bytes as f64),
        mib(base.bytes as f64),
        big.notes.line()
    );
    if let Some(over) = big.over.as_ref().or(base.over.as_ref()) {
        note = format!("{over}; {note}");
    }
    report.row(
        format!("{label} stored: RSS growth"),
        mib(big.rss_growth),
        format!(
            "{} minimal: {} ({per_record:.0} B each)",
            base.records,
            mib(base.rss_growth)
        ),
        format!("{} per byte", times(per_byte)),
        "≤ 3× per byte",
        note,
    );
    report.json.insert(
        key.to_owned(),
        json!({
            "records": big.records,
            "json_bytes": big.bytes,
            "rss_growth_bytes": big.rss_growth,
            "baseline_records": base.records,
            "baseline_json_bytes": base.bytes,
            "baseline_rss_growth_bytes": base.rss_growth,
            "rss_per_byte": loadgen::round3(per_byte),
            "over": big.over,
        }),
    );
}

/// Gateway alive at the end of a phase?
pub fn survival_row(
    report: &mut Report,
    phase: &str,
    gw: &mut Gateway,
    address_space: Option<u64>,
) {
    let (value, note) = match gw.exited() {
        None => ("yes".to_owned(), format!("RSS {}", mib(gw.rss() as f64))),
        Some(status) => ("NO".to_owned(), status),
    };
    report.row(
        format!("gateway alive after the {phase}"),
        value,
        match address_space {
            Some(bytes) => format!("prlimit --as={}", mib(bytes as f64)),
            None => "no prlimit".into(),
        },
        String::new(),
        "yes",
        note,
    );
}

/// The bystander's row for the window of a store.
pub fn storing_rows<T>(report: &mut Report, st: &Stored<T>, quiet: &Window) {
    if let Some(window) = &st.window {
        bystander_row(report, window, quiet);
    }
}
