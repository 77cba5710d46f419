//! Batch lookup: many queries in one call, software-pipelined so the random
//! memory loads of different queries overlap instead of queueing one behind
//! the other (DESIGN.md: "prefetch across a batch").
//!
//! Each query passes three stages, `DISTANCE` queries apart: (1) start
//! loading its bucket and, for a query without an extension, X's
//! representative bucket beside it (half of all hits, a caller who is the A
//! of X's representative, need it; loaded together, the two buckets cost
//! one wait instead of two in a row); (2) scan the first bucket (now
//! cached) and start loading the first candidate record, or, when the key
//! is surely absent, scan the representative bucket and start loading the
//! representative record; (3) answer with the ordinary `Shard::lookup`'s
//! rules, which find their lines in cache. While query i is answered,
//! queries i+D..i+2D are in flight, so the memory system stays busy without
//! the per-group stalls of a fixed-size batch. No allocation, no syscall.

use super::{query_is_well_formed, ShardSet};
use crate::binding::{LookupQuery, LookupResult, Reject};
use crate::table::route::{first_key_hash, representative_hash};

/// Queries between pipeline stages: enough loads in flight to cover memory
/// latency, few enough that the lines stay in L1/L2 until stage 3.
const DISTANCE: usize = 8;
/// Ring size for per-query state: a power of two above 2 * DISTANCE.
const RING: usize = 32;

impl ShardSet {
    /// Answers `queries[i]` into `answers[i]`. Both slices have one length;
    /// every query's X must belong to a shard of this set.
    pub fn lookup_batch(&self, queries: &[LookupQuery], answers: &mut [LookupResult], now_s: u32) {
        assert_eq!(queries.len(), answers.len(), "one answer per query");
        let n = queries.len();
        let mut shard_of = [0usize; RING];
        let mut first = [0u64; RING];
        let mut representative = [0u64; RING];
        let mut first_slot = [None; RING];
        let mut representative_slot = [None; RING];
        for step in 0..n + 2 * DISTANCE {
            if step < n {
                let slot = step % RING;
                let query = &queries[step];
                shard_of[slot] = self.shard_index(query.x);
                first[slot] = first_key_hash(query);
                let shard = self.shard(shard_of[slot]);
                shard.prefetch_bucket(first[slot]);
                if query.extension.is_none() {
                    representative[slot] = representative_hash(query.x);
                    shard.prefetch_bucket(representative[slot]);
                }
            }
            if let Some(i) = step.checked_sub(DISTANCE).filter(|&i| i < n) {
                let slot = i % RING;
                let shard = self.shard(shard_of[slot]);
                first_slot[slot] = shard.prefetch_candidate(first[slot]);
                representative_slot[slot] = None;
                if first_slot[slot].is_none() && queries[i].extension.is_none() {
                    representative_slot[slot] = shard.prefetch_candidate(representative[slot]);
                }
            }
            if let Some(i) = step.checked_sub(2 * DISTANCE).filter(|&i| i < n) {
                let query = &queries[i];
                let slot = i % RING;
                answers[i] = if query_is_well_formed(query) {
                    self.shard(shard_of[slot]).lookup_with_candidates(
                        query,
                        first_slot[slot],
                        representative_slot[slot],
                        now_s,
                    )
                } else {
                    LookupResult::Reject(Reject::BadNumber)
                };
            }
        }
        if self.control().screens_lookups() {
            self.screen(queries, answers, now_s);
        }
    }
}
