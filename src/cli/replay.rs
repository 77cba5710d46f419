//! `x700 replay CAPTURE --server ADDR`: reads a capture (`crate::capture`),
//! plans, sends and compares (`crate::replay`), then prints the summary
//! and writes the JSON report. This file parses flags and prints.

use super::args::ReplayArgs;
use super::decode::opcode_name;
use crate::capture::{self, Options as CaptureOptions};
use crate::protocol::Role;
use crate::replay::plan::{self, Filter};
use crate::replay::report;
use crate::replay::run::{self, Credentials, Options, Speed, WINDOW_DEFAULT};
use indicatif::{ProgressBar, ProgressStyle};
use std::fs::File;
use std::io::{BufReader, IsTerminal};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A progress bar over `requests` answers on stderr; hidden unless `shown`.
fn progress_bar(requests: u64, shown: bool) -> ProgressBar {
    if !shown {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(requests);
    bar.set_style(
        ProgressStyle::with_template("replay {bar:40} {pos}/{len} answers  {per_sec}  eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// Parses `--speed`: `max` or a factor above zero.
pub fn parse_speed(text: &str) -> Result<Speed, String> {
    if text == "max" {
        return Ok(Speed::Max);
    }
    match text.parse::<f64>() {
        Ok(factor) if factor.is_finite() && factor > 0.0 => Ok(Speed::Times(factor)),
        _ => Err(format!("--speed {text}: give a number above 0, or max")),
    }
}

/// Parses `--filter` values: `opcode=lookup,bind_axb` and `conn=0,3`.
pub fn parse_filter(specs: &[String]) -> Result<Filter, String> {
    let mut filter = Filter::default();
    for spec in specs {
        let (key, values) = spec
            .split_once('=')
            .ok_or_else(|| format!("--filter {spec}: expected opcode=NAMES or conn=NUMBERS"))?;
        for value in values.split(',').filter(|value| !value.is_empty()) {
            match key {
                "opcode" => {
                    let code = (0..=u8::MAX)
                        .find(|&code| opcode_name(code) == value && value != "unknown_opcode")
                        .ok_or_else(|| format!("--filter: unknown opcode {value}"))?;
                    filter.opcodes.push(code);
                }
                "conn" => filter.connections.push(
                    value
                        .parse()
                        .map_err(|_| format!("--filter: bad connection number {value}"))?,
                ),
                _ => return Err(format!("--filter {spec}: expected opcode= or conn=")),
            }
        }
    }
    Ok(filter)
}

/// The credentials from `--token` and `--tokens FILE`.
fn credentials(args: &ReplayArgs) -> Result<Credentials, String> {
    let mut credentials = Credentials {
        default: args.token.clone().unwrap_or_default().into_bytes(),
        ..Credentials::default()
    };
    let Some(path) = &args.tokens else {
        return Ok(credentials);
    };
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    credentials.by_role = parse_tokens(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(credentials)
}

/// A tokens file: a TOML table of `role = "credential"`.
pub fn parse_tokens(text: &str) -> Result<[Option<Vec<u8>>; 3], String> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| e.to_string())?;
    let mut by_role: [Option<Vec<u8>>; 3] = Default::default();
    for (key, value) in table {
        let role = [Role::Switch, Role::Platform, Role::Admin]
            .into_iter()
            .find(|role| role.as_str() == key)
            .ok_or_else(|| format!("unknown role {key} (switch, platform, admin)"))?;
        let token = value
            .as_str()
            .ok_or_else(|| format!("{key}: the credential must be a string"))?;
        by_role[usize::from(role.code()) - 1] = Some(token.as_bytes().to_vec());
    }
    Ok(by_role)
}

/// Runs `x700 replay`; returns the exit code: 0 when the whole capture was
/// read and every connection replayed to its end, 1 otherwise (the report
/// is printed and written all the same), 2 for bad flags.
pub fn replay(args: &ReplayArgs) -> i32 {
    let (speed, filter) = match (parse_speed(&args.speed), parse_filter(&args.filter)) {
        (Ok(speed), Ok(filter)) => (speed, filter),
        (Err(error), _) | (_, Err(error)) => {
            eprintln!("x700 replay: {error}");
            return 2;
        }
    };
    let file = match File::open(&args.capture) {
        Ok(file) => file,
        Err(error) => {
            eprintln!("x700 replay: {}: {error}", args.capture.display());
            return 1;
        }
    };
    let capture_options = CaptureOptions {
        server_port: args.port,
    };
    let capture = capture::read_capture(BufReader::new(file), &capture_options);
    if let Some(error) = &capture.error {
        eprintln!(
            "x700 replay: {}: {error}; replaying what was read before it",
            args.capture.display()
        );
    }
    let credentials = match credentials(args) {
        Ok(credentials) => credentials,
        Err(error) => {
            eprintln!("x700 replay: {error}");
            return 2;
        }
    };
    let plan = plan::plan(&capture, &filter);
    let options = Options {
        server: args.server,
        udp: args.udp.unwrap_or(args.server),
        speed,
        credentials,
        window: WINDOW_DEFAULT,
    };
    let progress = AtomicU64::new(0);
    let bar = progress_bar(plan.requests(), std::io::stderr().is_terminal());
    let cpu_before = crate::sys::process_cpu_us();
    // The replay's own wall time, not rounded up to a progress tick.
    let (replayed, elapsed) = std::thread::scope(|scope| {
        let running = scope.spawn(|| {
            let started = Instant::now();
            let replayed = run::run(&plan, &options, &progress);
            (replayed, started.elapsed())
        });
        while !running.is_finished() {
            bar.set_position(progress.load(Ordering::Relaxed));
            std::thread::sleep(Duration::from_millis(50));
        }
        running.join().unwrap_or_default()
    });
    bar.finish_and_clear();
    let cpu_after = crate::sys::process_cpu_us();
    let cpu_us = (cpu_after.0 + cpu_after.1).saturating_sub(cpu_before.0 + cpu_before.1);
    let mut report = report::report(&plan, &replayed, args.exact, elapsed, cpu_us);
    report.capture_error = capture.error.clone();
    print!("{}", report.to_text(opcode_name));
    if let Some(path) = &args.json {
        let text = report.to_json(opcode_name).to_string();
        if let Err(error) = std::fs::write(path, text + "\n") {
            eprintln!("x700 replay: {}: {error}", path.display());
            return 1;
        }
    }
    if report.capture_error.is_some() || !report.connection_errors.is_empty() {
        return 1;
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::opcode;

    #[test]
    fn speeds_and_filters_parse_and_bad_ones_are_refused() {
        assert_eq!(parse_speed("max"), Ok(Speed::Max));
        assert_eq!(parse_speed("5"), Ok(Speed::Times(5.0)));
        assert!(parse_speed("0").is_err());
        assert!(parse_speed("fast").is_err());
        let filter = parse_filter(&["opcode=lookup,bind_axb".into(), "conn=3".into()])
            .expect("a good filter");
        assert_eq!(filter.opcodes, [opcode::LOOKUP, opcode::BIND_AXB]);
        assert_eq!(filter.connections, [3]);
        assert!(parse_filter(&["opcode=unknown_opcode".into()]).is_err());
        assert!(parse_filter(&["opcode=nope".into()]).is_err());
        assert!(parse_filter(&["conn=x".into()]).is_err());
        assert!(parse_filter(&["port=1".into()]).is_err());
    }

    #[test]
    fn tokens_files_give_credentials_by_role() {
        let by_role = parse_tokens("switch = \"sw\"\nadmin = \"ad\"\n").expect("tokens");
        let credentials = Credentials {
            default: b"other".to_vec(),
            by_role,
        };
        assert_eq!(credentials.of(Role::Switch), b"sw");
        assert_eq!(credentials.of(Role::Platform), b"other");
        assert_eq!(credentials.of(Role::Admin), b"ad");
        assert!(parse_tokens("operator = \"x\"").is_err());
        assert!(parse_tokens("switch = 3").is_err());
        assert!(parse_tokens("switch = ").is_err());
    }
}
