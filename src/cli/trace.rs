//! `x700 trace`: the regulator's questions to the traceability history
//! ("which binding routed X at 14:03 on May 3rd, for which order?", "which
//! bindings did this order have?"), against a running node (`--server`:
//! admin sees every tenant, a platform its own) or offline on a stopped
//! node's directory (`--data`).

use super::args::TraceArgs;
use super::commands::{self, Access};
use super::output::Outcome;
use crate::number::{parse_real, parse_virtual, Number, XPolicy};
use crate::protocol::codec::control::TraceRequest;
use crate::protocol::{status, Role};

/// Runs `x700 trace`.
pub fn trace(args: &TraceArgs) -> Outcome {
    let request = match request(args) {
        Ok(request) => request,
        Err(outcome) => return outcome,
    };
    if let Some(server) = &args.store.server {
        let mut client = match super::remote::connect(server, &args.store, Role::Admin) {
            Ok(client) => client,
            Err(outcome) => return outcome,
        };
        return commands::json_answer(client.trace(&request), status::name);
    }
    let store = match commands::open(&args.store, Access::Read) {
        Ok(store) => store,
        Err(outcome) => return outcome,
    };
    let control = std::sync::Arc::clone(store.control());
    store.discard();
    // Read as it is on disk: nothing past its end is dropped.
    if let Err(error) = control.open_history(crate::history::HistoryConfig::default(), u64::MAX) {
        return Outcome::failure("corrupt", &error);
    }
    match control.trace_json(&request, |_| true) {
        Ok(json) => commands::json_answer(Ok((status::OK, json)), status::name),
        Err(error) => Outcome::failure("corrupt", &error),
    }
}

fn request(args: &TraceArgs) -> Result<TraceRequest<'_>, Outcome> {
    let bad = |why: &str| Outcome::failure("bad_request", why);
    match (&args.x, &args.at, &args.tenant, &args.order) {
        (Some(x), Some(at), None, None) => {
            let policy = XPolicy {
                allow_legacy: args.store.allow_legacy_x,
            };
            let x = parse_virtual(x, policy).map_err(commands::invalid)?;
            let at_s = parse_time(at).ok_or_else(|| {
                bad(&format!(
                    "time {at:?} is not RFC 3339 (2026-05-03T14:03:00+08:00) or Unix seconds"
                ))
            })?;
            let caller = match &args.caller {
                Some(c) => parse_real(c).map_err(commands::invalid)?,
                None => Number::NONE,
            };
            Ok(TraceRequest::AtX { x, at_s, caller })
        }
        (None, None, Some(tenant), Some(order)) => {
            if order.is_empty() || order.len() > 32 {
                return Err(bad("an order reference is 1 to 32 bytes"));
            }
            Ok(TraceRequest::Order {
                tenant: *tenant,
                order: order.as_bytes(),
            })
        }
        _ => Err(bad(
            "give --x X --at TIME [--caller C], or --tenant T --order O",
        )),
    }
}

/// Unix seconds, or RFC 3339 (`YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)`,
/// `t` and a space accepted for `T`), as Unix seconds.
pub fn parse_time(text: &str) -> Option<u32> {
    if let Ok(seconds) = text.parse::<u32>() {
        return Some(seconds);
    }
    let b = text.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = text.get(range)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())
            .flatten()
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &text[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        rest = &frac[digits..];
    }
    let offset_s = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6
            && (rest.starts_with('+') || rest.starts_with('-'))
            && &rest[3..4] == ":" =>
        {
            let h: i64 = rest[1..3].parse().ok()?;
            let m: i64 = rest[4..6].parse().ok()?;
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            sign * (h * 3600 + m * 60)
        }
        _ => return None,
    };
    // Days from 1970-01-01 to the date (proleptic Gregorian calendar).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_s;
    u32::try_from(seconds).ok()
}

#[cfg(test)]
mod tests {
    use super::parse_time;

    #[test]
    fn times_in_rfc_3339_and_unix_seconds() {
        assert_eq!(parse_time("1780000000"), Some(1_780_000_000));
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_time("2026-05-03T14:03:00+08:00"), Some(1_777_788_180));
        assert_eq!(parse_time("2026-05-03T06:03:00.250Z"), Some(1_777_788_180));
        assert_eq!(parse_time("2000-02-29 12:00:00-01:30"), Some(951_831_000));
        for bad in [
            "",
            "2026-13-01T00:00:00Z",
            "2026-05-03T14:03:00",
            "yesterday",
            "2026-05-03T14:03:00+8",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }
}
