//! Batch lookup: many queries in one call, staged so the random memory
//! loads of different queries overlap instead of queueing one behind the
//! other (DESIGN.md: "prefetch across a batch").
//!
//! For each group of `GROUP` queries: (1) start loading each query's bucket;
//! (2) scan the buckets and start loading the first candidate record, or,
//! when the key is surely absent, X's representative bucket; (3) scan those
//! and start loading the representative records; (4) answer each query with
//! the ordinary `Shard::lookup`, which now finds its lines in cache. No
//! allocation, no syscall.

use super::{query_is_well_formed, ShardSet};
use crate::binding::{LookupQuery, LookupResult, Reject};
use crate::table::route::{first_key_hash, representative_hash};

/// Queries in flight at once: enough loads to keep the memory system busy,
/// few enough that the lines stay in L1/L2 until stage 4.
const GROUP: usize = 16;

impl ShardSet {
    /// Answers `queries[i]` into `answers[i]`. Both slices have one length;
    /// every query's X must belong to a shard of this set.
    pub fn lookup_batch(&self, queries: &[LookupQuery], answers: &mut [LookupResult], now_s: u32) {
        assert_eq!(queries.len(), answers.len(), "one answer per query");
        for (queries, answers) in queries.chunks(GROUP).zip(answers.chunks_mut(GROUP)) {
            let mut shard_of = [0usize; GROUP];
            let mut first = [0u64; GROUP];
            let mut absent = [false; GROUP];
            for (i, query) in queries.iter().enumerate() {
                shard_of[i] = self.shard_index(query.x);
                first[i] = first_key_hash(query);
                self.shard(shard_of[i]).prefetch_bucket(first[i]);
            }
            for (i, query) in queries.iter().enumerate() {
                let shard = &self.shard(shard_of[i]);
                if !shard.prefetch_candidate(first[i]) && query.extension.is_none() {
                    absent[i] = true;
                    shard.prefetch_bucket(representative_hash(query.x));
                }
            }
            for (i, query) in queries.iter().enumerate() {
                if absent[i] {
                    self.shard(shard_of[i])
                        .prefetch_candidate(representative_hash(query.x));
                }
            }
            for (i, query) in queries.iter().enumerate() {
                answers[i] = if query_is_well_formed(query) {
                    self.shard(shard_of[i]).lookup(query, now_s)
                } else {
                    LookupResult::Reject(Reject::BadNumber)
                };
            }
        }
    }
}
