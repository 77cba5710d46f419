//! Where a checked request runs: lookups on this loop's shards gather into
//! one prefetching batch; requests for another loop's shards are forwarded
//! in one batch per loop and iteration (`remote.rs`).

use super::{Worker, LOOKUP_ANSWER_BYTES, LOOKUP_BATCH_MAX};
use crate::binding::{LookupQuery, LookupResult, Reject};
use crate::protocol::codec;
use crate::protocol::status;
use crate::server::auth::Access;
use crate::server::cross::{Origin, WorkItem};
use crate::server::dispatch::{self, Op};

impl Worker {
    /// Sends a checked request to the loop that owns its shard, or runs it
    /// here.
    pub(super) fn route(&mut self, origin: Origin, request_id: u32, op: Op, access: Access) {
        if let Op::Lookup(query) = op {
            return self.route_lookup(origin, request_id, query);
        }
        let owner = self.shard_owner[usize::from(op.table_shard(self.set.shard_count()))];
        if owner == self.index {
            // Reads of a binding see every earlier lookup's answer first.
            self.run_lookups();
            let op_code = dispatch::op_opcode(&op);
            let mut frame = std::mem::take(&mut self.scratch);
            frame.clear();
            dispatch::execute_write(
                &mut self.set,
                &op,
                &access,
                op_code,
                request_id,
                self.now_s,
                &mut frame,
            );
            self.deliver(origin, &frame);
            self.scratch = frame;
            return;
        }
        if !self.admit(origin, dispatch::op_opcode(&op), request_id) {
            return;
        }
        self.outgoing[owner].push(WorkItem {
            origin,
            request_id,
            op,
            access,
        });
    }

    /// Sends a checked lookup (of any tenant's binding: lookups are not
    /// screened by tenant here) to the loop that owns its shard, or gathers
    /// it into this loop's batch: `route` for the commonest request,
    /// without building an `Op`.
    #[inline]
    pub(super) fn route_lookup(&mut self, origin: Origin, request_id: u32, query: LookupQuery) {
        let shard = crate::table::hash::shard_of(query.x, self.set.shard_count());
        let owner = self.shard_owner[usize::from(shard)];
        if owner == self.index {
            self.lookups.push(query);
            self.lookup_origins.push((origin, request_id));
            if self.lookups.len() >= LOOKUP_BATCH_MAX {
                self.run_lookups();
            }
            return;
        }
        if !self.admit(origin, crate::protocol::opcode::LOOKUP, request_id) {
            return;
        }
        self.outgoing[owner].push(WorkItem {
            origin,
            request_id,
            op: Op::Lookup(query),
            access: Access::AllTenants,
        });
    }

    /// Counts a request that will be answered later (by another loop or
    /// the log) against its connection's in-flight limit; past the limit
    /// it is answered BUSY here and false is returned.
    pub(super) fn admit(&mut self, origin: Origin, op_code: u8, request_id: u32) -> bool {
        let Origin::Tcp { token, .. } = origin else {
            return true;
        };
        let limit = self.shared.config.limits.in_flight_per_connection_max;
        let Some(conn) = self.conns.get_mut(token as usize) else {
            return false;
        };
        if conn.in_flight >= limit {
            self.answer(token as usize, op_code, status::BUSY, request_id, &[]);
            return false;
        }
        conn.in_flight += 1;
        true
    }

    /// Runs the gathered local lookups as one prefetching batch.
    pub(super) fn run_lookups(&mut self) {
        if self.lookups.is_empty() {
            return;
        }
        self.answers
            .resize(self.lookups.len(), LookupResult::Reject(Reject::NotBound));
        self.set
            .lookup_batch(&self.lookups, &mut self.answers, self.now_s);
        let mut frame = [0u8; LOOKUP_ANSWER_BYTES];
        let origins = std::mem::take(&mut self.lookup_origins);
        for (i, &(origin, request_id)) in origins.iter().enumerate() {
            let length = codec::write_lookup_answer(&mut frame, request_id, &self.answers[i]);
            self.deliver(origin, &frame[..length]);
        }
        let count = origins.len() as u64;
        let latency_ns =
            u64::try_from(self.iteration_started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.metrics.latency(latency_ns, count);
        self.lookup_origins = origins;
        self.lookup_origins.clear();
        self.lookups.clear();
    }
}
