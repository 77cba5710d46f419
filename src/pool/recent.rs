//! What the allocator remembers about bindings that are gone: the cool-off
//! (a released X waits `cool_off_s` before the pair's numbers use it again)
//! and stickiness (a pair that binds again gets its previous X).
//!
//! One FIFO of releases holds both. An entry is forgotten, oldest first,
//! once the FIFO holds more than `sticky_pairs_max` entries AND its cool-off
//! is over: the cool-off is a rule and is never cut short, stickiness is a
//! preference and is bounded. Memory is therefore
//! max(`sticky_pairs_max`, releases within the last `cool_off_s`) entries,
//! each about 100 bytes over the queue, the pair map and two cooling lists.

use super::hash::FixedMap;
use crate::number::Number;
use std::collections::VecDeque;

/// One binding gone: its pair, its X, when it went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Release {
    pub(crate) a: Number,
    pub(crate) b: Number,
    pub(crate) x: u64,
    pub(crate) gone_at_s: u32,
}

/// The pair as a key that does not depend on which party is A.
pub(crate) fn pair_key(a: Number, b: Number) -> (Number, Number) {
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

/// The release memory (see the module docs).
#[derive(Debug, Clone, Default)]
pub(crate) struct Recent {
    /// Releases, oldest first.
    queue: VecDeque<Release>,
    /// Sequence number of `queue[0]` (entries popped so far).
    popped: u64,
    /// Each pair's latest release still remembered: its X and sequence.
    last_x: FixedMap<(Number, Number), (u64, u64)>,
    /// Per real number, the X it may not use until the given second.
    cooling: FixedMap<Number, Vec<(u64, u32)>>,
}

impl Recent {
    /// Remembers a release. `cool_off_s` 0 remembers it for stickiness only.
    pub(crate) fn push(&mut self, release: Release, cool_off_s: u32) {
        let seq = self.popped + self.queue.len() as u64;
        self.last_x
            .insert(pair_key(release.a, release.b), (release.x, seq));
        if cool_off_s > 0 {
            let until_s = release.gone_at_s.saturating_add(cool_off_s);
            for number in [release.a, release.b] {
                self.cooling
                    .entry(number)
                    .or_default()
                    .push((release.x, until_s));
            }
        }
        self.queue.push_back(release);
    }

    /// Forgets the oldest releases beyond `keep` whose cool-off is over at
    /// `now_s`.
    pub(crate) fn trim(&mut self, keep: usize, cool_off_s: u32, now_s: u32) {
        while self.queue.len() > keep {
            let Some(&front) = self.queue.front() else {
                break;
            };
            let until_s = front.gone_at_s.saturating_add(cool_off_s);
            if cool_off_s > 0 && until_s > now_s {
                break;
            }
            self.queue.pop_front();
            let seq = self.popped;
            self.popped += 1;
            let key = pair_key(front.a, front.b);
            if self
                .last_x
                .get(&key)
                .is_some_and(|&(_, latest)| latest == seq)
            {
                self.last_x.remove(&key);
            }
            if cool_off_s > 0 {
                for number in [front.a, front.b] {
                    self.forget_cooling(number, front.x, until_s);
                }
            }
        }
    }

    fn forget_cooling(&mut self, number: Number, x: u64, until_s: u32) {
        if let Some(list) = self.cooling.get_mut(&number) {
            if let Some(i) = list.iter().position(|&entry| entry == (x, until_s)) {
                list.swap_remove(i);
            }
            if list.is_empty() {
                self.cooling.remove(&number);
            }
        }
    }

    /// `number`'s cooling entries: (X, the second it may use X again);
    /// entries whose second has passed may linger until trimmed.
    pub(crate) fn cooling_list(&self, number: Number) -> &[(u64, u32)] {
        self.cooling.get(&number).map_or(&[], Vec::as_slice)
    }

    /// The X the pair held when it last released one, if remembered.
    pub(crate) fn sticky(&self, a: Number, b: Number) -> Option<u64> {
        self.last_x.get(&pair_key(a, b)).map(|&(x, _)| x)
    }

    /// Releases remembered, oldest first, and the sequence of the first.
    pub(crate) fn releases(&self) -> (u64, impl Iterator<Item = &Release>) {
        (self.popped, self.queue.iter())
    }

    /// Restores the sequence counter (checkpoint decode, before any push).
    pub(crate) fn set_popped(&mut self, popped: u64) {
        self.popped = popped;
    }

    /// Releases remembered.
    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }

    /// An estimate of the heap bytes held.
    pub(crate) fn heap_bytes(&self) -> usize {
        let cooling: usize = self
            .cooling
            .values()
            .map(|list| list.capacity() * std::mem::size_of::<(u64, u32)>())
            .sum();
        self.queue.capacity() * std::mem::size_of::<Release>()
            + self.last_x.capacity() * (std::mem::size_of::<((Number, Number), (u64, u64))>() + 1)
            + self.cooling.capacity() * (std::mem::size_of::<(Number, Vec<(u64, u32)>)>() + 1)
            + cooling
    }
}
