// The check behind the history fuzz target, shared with
// tests/history_store.rs: arbitrary bytes as a history segment's data file
// (and, separately, as a sealed segment's index beside a valid data file)
// are opened and queried. Nothing may panic; a refusal is an error value.

/// Opens `bytes` as a history directory's segment and queries it.
#[allow(dead_code)]
fn check_history(bytes: &[u8]) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "x700-fuzz-history-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temporary directory");
    for (name, durable) in [
        ("00000000000000000001.hlog", u64::MAX),
        ("00000000000000000001.hlog", 5),
    ] {
        std::fs::write(dir.join(name), bytes).expect("write the segment");
        let config = x700::history::HistoryConfig {
            retention_s: 86_400,
            segment_records_max: 64,
        };
        if let Ok(history) = x700::history::History::open(&dir, config, durable) {
            let x = x700::number::Number::from_digits(b"700123400000001");
            let _ = history.at(x, 1_800_000_000, None);
            let _ = history.at(x, 0, Some(x700::number::Number::from_digits(b"13800000001")));
            let _ = history.order(7, b"order");
            let _ = history.stats();
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
