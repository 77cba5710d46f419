//! The X in use (at least one live pair), kept as maximal runs of
//! consecutive values. First-fit hands out the lowest free X, so the X in
//! use mostly form a few long runs: the set costs far less than one entry
//! per X, and "the lowest free X from here" is one map step.

use std::collections::BTreeMap;

/// Maximal runs of X values in use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Runs {
    /// Run start -> run end (inclusive). Runs never touch or overlap.
    runs: BTreeMap<u64, u64>,
    /// Values in all runs.
    count: u64,
}

impl Runs {
    /// The run holding `x`, as (start, end).
    fn run_of(&self, x: u64) -> Option<(u64, u64)> {
        let (&start, &end) = self.runs.range(..=x).next_back()?;
        (end >= x).then_some((start, end))
    }

    /// True if `x` is in use.
    pub(crate) fn contains(&self, x: u64) -> bool {
        self.run_of(x).is_some()
    }

    /// Marks `x` in use; it must not be already.
    pub(crate) fn insert(&mut self, x: u64) {
        assert!(!self.contains(x), "Runs::insert: {x} already in use");
        let left = x
            .checked_sub(1)
            .and_then(|before| self.run_of(before))
            .map(|(start, _)| start);
        let right_end = x
            .checked_add(1)
            .and_then(|after| self.runs.get(&after).copied());
        if right_end.is_some() {
            self.runs.remove(&(x + 1));
        }
        let start = left.unwrap_or(x);
        self.runs.insert(start, right_end.unwrap_or(x));
        self.count += 1;
    }

    /// Marks `x` free; it must be in use.
    pub(crate) fn remove(&mut self, x: u64) {
        let (start, end) = self.run_of(x).expect("Runs::remove: value not in use");
        if start == x {
            self.runs.remove(&start);
        } else {
            self.runs.insert(start, x - 1);
        }
        if end > x {
            self.runs.insert(x + 1, end);
        }
        self.count -= 1;
    }

    /// The lowest free value in `from..=last`.
    pub(crate) fn next_free(&self, from: u64, last: u64) -> Option<u64> {
        let candidate = match self.run_of(from) {
            // Runs are maximal, so the value after one is free.
            Some((_, end)) => end.checked_add(1)?,
            None => from,
        };
        (candidate <= last).then_some(candidate)
    }

    /// Values in use within `first..=last`. O(log runs + runs met).
    pub(crate) fn count_in(&self, first: u64, last: u64) -> u64 {
        if first > last {
            return 0;
        }
        let mut total = 0;
        if let Some((start, end)) = self.run_of(first) {
            if start < first {
                total += end.min(last) - first + 1;
            }
        }
        for (&start, &end) in self.runs.range(first..=last) {
            total += end.min(last) - start + 1;
        }
        total
    }

    /// In-use values within `first..=last`, ascending.
    pub(crate) fn values_in(&self, first: u64, last: u64) -> impl Iterator<Item = u64> + '_ {
        let head = self.run_of(first).filter(|&(start, _)| start < first);
        head.into_iter()
            .chain(self.runs.range(first..=last).map(|(&s, &e)| (s, e)))
            .flat_map(move |(start, end)| start.max(first)..=end.min(last))
    }

    /// Values in use.
    pub(crate) fn count(&self) -> u64 {
        self.count
    }

    /// Runs held (memory is per run, not per value).
    pub(crate) fn run_count(&self) -> usize {
        self.runs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn runs_match_a_plain_set() {
        let mut runs = Runs::default();
        let mut set = BTreeSet::new();
        let mut state = 7u64;
        for _ in 0..4000 {
            let x = crate::synth::splitmix64(&mut state) % 64;
            if set.insert(x) {
                runs.insert(x);
            } else {
                set.remove(&x);
                runs.remove(x);
            }
            assert_eq!(runs.count(), set.len() as u64);
            let (first, last) = (x.saturating_sub(9), x + 9);
            assert_eq!(
                runs.count_in(first, last),
                set.range(first..=last).count() as u64
            );
            let listed: Vec<u64> = runs.values_in(first, last).collect();
            let expected: Vec<u64> = set.range(first..=last).copied().collect();
            assert_eq!(listed, expected);
            let free = (first..=last).find(|v| !set.contains(v));
            assert_eq!(runs.next_free(first, last), free);
        }
    }
}
