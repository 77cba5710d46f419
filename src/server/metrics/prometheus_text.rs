//! The Prometheus text format 0.0.4, made from the OpenMetrics page, for
//! scrapers that ask `/metrics` for `text/plain`.

/// The page in the Prometheus text format 0.0.4, made from the OpenMetrics
/// page the encoder writes, for scrapers that ask for `text/plain` and not
/// for OpenMetrics (`promtool check metrics` among them). The two formats
/// differ, for the metric types this page uses (counter, gauge, histogram),
/// in three ways only:
/// - a counter's HELP and TYPE lines name its samples, `_total` included
///   (OpenMetrics names the family, without it);
/// - there is no `# UNIT` line (the unit stays in the name);
/// - there is no `# EOF` terminator.
///
/// Sample lines are the same in both. Every other line is copied as it is.
pub fn prometheus_text(openmetrics: &str) -> String {
    let counters: Vec<&str> = openmetrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut text = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let metadata = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|prefix| Some((prefix, line.strip_prefix(prefix)?)));
        match metadata {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                text.push_str(prefix);
                text.push_str(name);
                if counters.contains(&name) {
                    text.push_str("_total");
                }
                text.push(' ');
                text.push_str(tail);
            }
            None => text.push_str(line),
        }
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::metrics::encoder::tests::page;

    /// Counters' metadata takes the samples' name; UNIT and EOF go; the
    /// rest is copied.
    #[test]
    fn the_prometheus_text_names_counters_by_their_samples() {
        let text = prometheus_text(&page());
        assert!(
            text.starts_with(
                "# HELP x700_requests_total Requests answered, by opcode and status.\n\
                 # TYPE x700_requests_total counter\n\
                 x700_requests_total{opcode=\"lookup\",status=\"ok\"} 2\n\
                 # HELP x700_request_latency_seconds Time from reading a lookup to encoding its answer.\n\
                 # TYPE x700_request_latency_seconds histogram\n\
                 x700_request_latency_seconds_sum 1.000003\n"
            ),
            "{text}"
        );
        assert!(
            text.ends_with("# TYPE x700_queue_depth gauge\nx700_queue_depth 0\n"),
            "{text}"
        );
        assert!(
            !text.contains("# UNIT") && !text.contains("# EOF"),
            "{text}"
        );
    }
}
