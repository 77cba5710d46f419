//! `x700 import --tenant T FILE.csv`: bindings migrated from another
//! platform, from a CSV file, to a running node (`--server`) or into a
//! stopped node's data directory (`--data`).
//!
//! Exactly this happens, in two phases:
//!
//! 1. **The whole file is checked first** (`rows`): every row is parsed and
//!    checked (numbers, order reference, lifetime, the fields its mode
//!    needs, no two rows claiming the same place on an X). If any row is
//!    bad, nothing is sent: every bad row is reported (line, column,
//!    reason) and the command exits 1.
//! 2. **Batches of `--batch` rows** (default 1000) are then sent in file
//!    order, each pipelined. A batch whose every row is bound (created, or
//!    already present identically: binds are idempotent) is done, and the
//!    report says so. If any row of a batch is refused (a conflict with a
//!    live binding, unauthorised, ...), the bindings that batch created are
//!    unbound again (compensation), the refused rows are reported with
//!    their lines and statuses, and the import stops: the batches before
//!    stay in, the batches after are not sent, and the report names the
//!    line to resume from. `--resume` (with the same `--report`) skips the
//!    batches the report marks done; the report holds the file's SHA-256
//!    and refuses another file.
//!
//! A batch is all-or-nothing from the importer's point of view, not a
//! transaction of the node: while a batch is under way its first bindings
//! already route, and if the importer dies mid-batch that batch stays
//! partly bound until `--resume` sends it again (the idempotent binds
//! complete it). A binding the compensation could not remove is named in
//! `left_bound`.

mod csv;
mod report;
mod rows;
mod send;

use super::args::StoreArgs;
use super::commands::{open, policy, Access};
use super::output::Outcome;
use crate::binding::BindingId;
use crate::store::clock::{Clock, SystemClock};
use report::{Rejected, Report};
use rows::{Row, RowError};
use send::{Answer, Remote, Sink};
use serde_json::{json, Value};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Rows per batch unless `--batch` says otherwise.
pub const BATCH_DEFAULT: u32 = 1000;
/// Largest `--batch`: a batch is what one failure undoes.
pub const BATCH_MAX: u32 = 100_000;

/// `x700 import`.
#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// Store options.
    #[command(flatten)]
    pub store: StoreArgs,
    /// The tenant (business user) every row is bound for.
    #[arg(long)]
    pub tenant: u32,
    /// The CSV file: a header row naming the columns, then one binding a
    /// row.
    #[arg(value_name = "FILE.csv")]
    pub file: PathBuf,
    /// Rows per batch: a refused row undoes its batch and stops the import.
    #[arg(long, value_name = "N", default_value_t = BATCH_DEFAULT,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(BATCH_MAX)))]
    pub batch: u32,
    /// Write the progress report here (JSON): batches done, where to
    /// resume, the file's SHA-256.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Skip the batches `--report` marks done.
    #[arg(long, requires = "report")]
    pub resume: bool,
}

/// How phase 2 ended.
enum Ending {
    /// Every row is in.
    Complete,
    /// A batch was refused and undone.
    Refused,
    /// The session broke or the store failed: the batch may be partly in.
    Interrupted(String),
}

/// `x700 import`.
pub fn import(args: &ImportArgs) -> Outcome {
    let started = Instant::now();
    let text = match read_file(&args.file) {
        Ok(text) => text,
        Err(outcome) => return outcome,
    };
    let sha256 = report::sha256_hex(text.as_bytes());
    let earlier = match earlier_report(args, &sha256) {
        Ok(earlier) => earlier,
        Err(outcome) => return outcome,
    };
    let rows = match rows::check_file(&text, args.tenant, policy(&args.store), SystemClock.now_s())
    {
        Ok(rows) => rows,
        Err(errors) => return invalid(args, &text, &errors),
    };
    let mut report = earlier.unwrap_or_else(|| Report {
        format: report::FORMAT.to_string(),
        file: args.file.display().to_string(),
        sha256,
        tenant: args.tenant,
        rows: rows.len() as u64,
        rows_done: 0,
        batches_done: 0,
        created: 0,
        present: 0,
        complete: false,
        resume_from_line: rows.first().map(|row| row.line),
        rejected: Vec::new(),
        left_bound: Vec::new(),
    });
    report.rejected.clear();
    report.left_bound.clear();
    let mut sink = match open_sink(&args.store) {
        Ok(sink) => sink,
        Err(outcome) => return outcome,
    };
    // rows_done <= rows (checked when the report was read): fits usize.
    let start = usize::try_from(report.rows_done).unwrap_or(usize::MAX);
    let pending = rows.get(start..).unwrap_or_default();
    let shown = !args.store.json && std::io::stderr().is_terminal();
    let bar = crate::bench::progress_bar(pending.len() as u64, "import ", shown);
    let batches_before = report.batches_done;
    let mut ending = Ending::Complete;
    for batch in pending.chunks(args.batch as usize) {
        let remote = matches!(sink, Sink::Remote(_));
        match send_batch(&mut sink, batch, &mut report) {
            Ok(true) if remote => {
                if let Some(path) = &args.report {
                    if let Err(error) = report::write(path, &report) {
                        ending = Ending::Interrupted(error);
                        break;
                    }
                }
            }
            Ok(true) => {}
            Ok(false) => {
                ending = Ending::Refused;
                break;
            }
            Err(error) => {
                ending = Ending::Interrupted(error);
                break;
            }
        }
        bar.inc(batch.len() as u64);
    }
    bar.finish_and_clear();
    report.complete = report.rows_done == report.rows;
    report.resume_from_line = rows
        .get(usize::try_from(report.rows_done).unwrap_or(usize::MAX))
        .map(|row| row.line);
    if let Sink::Offline(store) = sink {
        // Offline, the batches reach the files only through the checkpoint
        // `close` takes: the report may say they are done only after it.
        if let Err(error) = store.close() {
            return Outcome::from(error);
        }
    }
    if let Some(path) = &args.report {
        if let Err(error) = report::write(path, &report) {
            ending = Ending::Interrupted(error);
        }
    }
    let sent_rows = report.rows_done.saturating_sub(start as u64);
    summary(args, &report, &ending, batches_before, sent_rows, started)
}

/// The file's text, within the size limit.
fn read_file(path: &Path) -> Result<String, Outcome> {
    let unreadable =
        |e: std::io::Error| Outcome::failure("bad_request", &format!("{}: {e}", path.display()));
    let bytes = std::fs::metadata(path).map_err(unreadable)?.len();
    if bytes > rows::FILE_BYTES_MAX {
        return Err(Outcome::failure(
            "bad_request",
            &format!(
                "{} is {bytes} bytes; at most {} per file",
                path.display(),
                rows::FILE_BYTES_MAX
            ),
        ));
    }
    let bytes = std::fs::read(path).map_err(unreadable)?;
    String::from_utf8(bytes).map_err(|e| {
        Outcome::failure(
            "bad_request",
            &format!(
                "{} is not UTF-8 (byte {})",
                path.display(),
                e.utf8_error().valid_up_to()
            ),
        )
    })
}

/// With `--resume`, the report of the earlier run, checked to be of this
/// file and tenant. Without it, an existing report is refused rather than
/// overwritten: it may be all that says how far an import got.
fn earlier_report(args: &ImportArgs, sha256: &str) -> Result<Option<Report>, Outcome> {
    let Some(path) = &args.report else {
        return Ok(None);
    };
    if !args.resume {
        if path.exists() {
            return Err(Outcome::failure(
                "bad_request",
                &format!(
                    "the report {} exists: give --resume to carry on, or remove it to start over",
                    path.display()
                ),
            ));
        }
        return Ok(None);
    }
    let report = report::read(path).map_err(|e| Outcome::failure("bad_request", &e))?;
    if report.sha256 != sha256 {
        return Err(Outcome::failure(
            "bad_request",
            &format!(
                "the report {} is of another file (SHA-256 {}, this file {sha256})",
                path.display(),
                report.sha256
            ),
        ));
    }
    if report.tenant != args.tenant {
        return Err(Outcome::failure(
            "bad_request",
            &format!(
                "the report {} is of an import for tenant {}, not {}",
                path.display(),
                report.tenant,
                args.tenant
            ),
        ));
    }
    Ok(Some(report))
}

/// A session with the node, or the data directory opened.
fn open_sink(store: &StoreArgs) -> Result<Sink, Outcome> {
    if let Some(server) = &store.server {
        // The first address of a list: the import's batches go to one node
        // (give the leader's address; another member answers NOT_LEADER,
        // which stops the import like any refusal, and it can resume).
        let first = server.split(',').next().unwrap_or(server).trim();
        let client = super::remote::connect(first, store, crate::protocol::Role::Platform)?;
        return Ok(Sink::Remote(Remote::new(client)));
    }
    open(store, Access::Create).map(Sink::Offline)
}

/// Sends one batch and tallies it in `report`: `Ok(true)` when every row
/// is in, `Ok(false)` when some were refused (the batch then undone and
/// the refusals in `report.rejected`), `Err` when the session broke.
fn send_batch(sink: &mut Sink, batch: &[Row], report: &mut Report) -> Result<bool, String> {
    let answers = sink.bind_batch(batch)?;
    let mut created_ids: Vec<BindingId> = Vec::new();
    let mut present = 0u64;
    for (row, answer) in batch.iter().zip(&answers) {
        match answer {
            Answer::Bound {
                binding_id,
                created: true,
            } => created_ids.push(*binding_id),
            Answer::Bound { created: false, .. } => present += 1,
            Answer::Refused { status, reason } => report.rejected.push(Rejected {
                line: row.line,
                column: None,
                reason: reason.clone(),
                status: status.clone(),
            }),
        }
    }
    if report.rejected.is_empty() {
        report.rows_done += batch.len() as u64;
        report.batches_done += 1;
        report.created += created_ids.len() as u64;
        report.present += present;
        return Ok(true);
    }
    report.left_bound = sink
        .unbind_all(&created_ids)
        .into_iter()
        .map(|(id, _)| id.0)
        .collect();
    Ok(false)
}

/// Phase 1 failed: nothing was sent. `rows` counts the data rows when the
/// file is CSV at all (`null` if it is not).
fn invalid(args: &ImportArgs, text: &str, errors: &[RowError]) -> Outcome {
    let rows = csv::records(text, rows::FIELD_BYTES_MAX)
        .ok()
        .map(|records| records.len().saturating_sub(1));
    let rejected: Vec<Rejected> = errors
        .iter()
        .map(|error| Rejected {
            line: error.line,
            column: error.column.clone(),
            reason: error.reason.clone(),
            status: error.status.to_string(),
        })
        .collect();
    let fields = json!({
        "error": format!("{} bad row(s): nothing was imported", rejected.len()),
        "rows": rows,
        "batches_done": 0,
        "created": 0,
        "present": 0,
        "resume_from_line": Value::Null,
        "report": args.report.as_ref().map(|p| p.display().to_string()),
    });
    with_rejected(
        Outcome::with_status("invalid", fields, false),
        &rejected,
        args,
    )
}

/// The closing summary: counts over the whole file so far (earlier runs
/// included), this run's elapsed time and rate.
fn summary(
    args: &ImportArgs,
    report: &Report,
    ending: &Ending,
    batches_before: u64,
    sent_rows: u64,
    started: Instant,
) -> Outcome {
    let seconds = started.elapsed().as_secs_f64();
    let remaining_rows = report.rows - report.rows_done;
    let batch = u64::from(args.batch);
    // Row counts below 2^52: exact in f64.
    #[allow(clippy::cast_precision_loss)]
    let rows_per_s = (sent_rows as f64 / seconds.max(1e-9)).round();
    let mut fields = json!({
        "rows": report.rows,
        "batches": report.batches_done + remaining_rows.div_ceil(batch),
        "batches_done": report.batches_done,
        "batches_this_run": report.batches_done - batches_before,
        "created": report.created,
        "present": report.present,
        "resume_from_line": report.resume_from_line,
        "left_bound": report.left_bound,
        "report": args.report.as_ref().map(|p| p.display().to_string()),
        "elapsed_s": (seconds * 1000.0).round() / 1000.0,
        "rows_per_s": rows_per_s,
    });
    let (status, success) = match ending {
        Ending::Complete => ("ok", true),
        Ending::Refused => ("refused", false),
        Ending::Interrupted(error) => {
            if let Value::Object(map) = &mut fields {
                map.insert("error".into(), Value::from(error.as_str()));
            }
            ("interrupted", false)
        }
    };
    with_rejected(
        Outcome::with_status(status, fields, success),
        &report.rejected,
        args,
    )
}

/// Adds the rejected rows: the full list in JSON; in text, one line each
/// on stderr and their count in the summary.
fn with_rejected(mut outcome: Outcome, rejected: &[Rejected], args: &ImportArgs) -> Outcome {
    let value = if args.store.json {
        serde_json::to_value(rejected).unwrap_or(Value::Null)
    } else {
        for row in rejected {
            let column = row
                .column
                .as_deref()
                .map(|c| format!(" column {c}"))
                .unwrap_or_default();
            let message = Outcome::with_status(&row.status, json!({ "reason": row.reason }), false);
            eprintln!(
                "line {}{column}: {}",
                row.line,
                super::output::text_line(&message)
            );
        }
        Value::from(rejected.len())
    };
    outcome.object.insert("rejected".into(), value);
    outcome
}
