//! The two questions and the figures (see the module docs of `history`).

use std::collections::BTreeMap;

use super::event::{Event, Life};
use super::index::{order_key, Section};
use super::query;
use super::store::{read_record, Index, Sealed};
use super::{corrupt, History, HistoryError, HistoryStats};
use crate::number::Number;

impl History {
    /// The lives live on `x` at second `at_s` (see `query::live_at`), sorted
    /// by creation. With `caller`, only those that concern it
    /// (`query::concerns`: for AXB the life where the caller is A or B; AXN
    /// and AXE lives answer every caller).
    pub fn at(
        &self,
        x: Number,
        at_s: u32,
        caller: Option<Number>,
    ) -> Result<Vec<Life>, HistoryError> {
        let span = self.span_max_s();
        let events = self.events_on_x(x, at_s.saturating_sub(span), at_s.saturating_add(span))?;
        let mut lives: Vec<Life> = query::by_binding(events)
            .values()
            .filter(|group| query::live_at(group, at_s))
            .filter_map(|group| query::fold(group))
            .filter(|life| caller.is_none_or(|c| query::concerns(life, c)))
            .collect();
        query::sort(&mut lives);
        Ok(lives)
    }

    /// Every life whose `Created` (or an `Updated`) carried this tenant and
    /// order, sorted by creation.
    pub fn order(&self, tenant: u32, order: &[u8]) -> Result<Vec<Life>, HistoryError> {
        let key = order_key(tenant, order);
        let mut found = Vec::new();
        self.each_segment(0, u32::MAX, Section::Order, key, |event| {
            if event.tenant == tenant && event.order == order {
                found.push(event);
            }
        })?;
        // Binding -> (X, creation); then one X lookup per X over the union
        // of its bindings' windows.
        let mut bindings: BTreeMap<u64, (Number, u32)> = BTreeMap::new();
        for event in &found {
            bindings
                .entry(event.binding_id)
                .or_insert((event.x, event.created_s));
        }
        let mut windows: BTreeMap<Number, (u32, u32)> = BTreeMap::new();
        for &(x, created_s) in bindings.values() {
            let w = windows.entry(x).or_insert((created_s, created_s));
            w.0 = w.0.min(created_s);
            w.1 = w.1.max(created_s);
        }
        let span = self.span_max_s();
        let mut events = Vec::new();
        for (x, (lo, hi)) in windows {
            let mut on_x = self.events_on_x(x, lo, hi.saturating_add(span))?;
            on_x.retain(|e| bindings.contains_key(&e.binding_id));
            events.append(&mut on_x);
        }
        let mut lives: Vec<Life> = query::by_binding(events)
            .values()
            .filter_map(|g| query::fold(g))
            .collect();
        query::sort(&mut lives);
        Ok(lives)
    }

    /// Figures.
    pub fn stats(&self) -> HistoryStats {
        let mut stats = HistoryStats {
            last_index: self.last_index,
            span_max_s: self.span_max_s(),
            torn_bytes: self.torn_bytes,
            ..HistoryStats::default()
        };
        if let Some(open) = &self.open {
            stats.index_memory_bytes += open.index.memory_bytes() as u64;
        }
        let metas = self
            .sealed
            .iter()
            .map(|s| (&s.meta, Some(s)))
            .chain(self.open.iter().map(|o| (&o.meta, None)));
        for (meta, sealed) in metas {
            stats.records += meta.records;
            stats.lives += meta.lives;
            stats.segments += 1;
            stats.bytes += meta.data_bytes;
            if let Some(s) = sealed {
                stats.bytes += std::fs::metadata(&s.index_path).map_or(0, |m| m.len());
                stats.index_memory_bytes += match &s.index {
                    Index::Memory(mem) => mem.memory_bytes(),
                    Index::File(file) => file.fence_bytes(),
                } as u64;
            }
            if meta.records > 0 {
                stats.oldest_s = Some(
                    stats
                        .oldest_s
                        .map_or(meta.min_at_s, |o| o.min(meta.min_at_s)),
                );
            }
        }
        stats
    }

    /// The half-width of query windows: the longest life span any kept
    /// record proves.
    fn span_max_s(&self) -> u32 {
        let sealed = self.sealed.iter().map(|s| s.meta.span_max_s);
        sealed
            .chain(self.open.iter().map(|o| o.meta.span_max_s))
            .max()
            .unwrap_or(0)
    }

    /// Every event on `x` in the segments whose time range meets [lo, hi],
    /// and every event stored without X there (see `append`): grouped by
    /// binding, those join the lives they end.
    fn events_on_x(&self, x: Number, lo: u32, hi: u32) -> Result<Vec<Event>, HistoryError> {
        let mut events = Vec::new();
        for key in [x, Number::NONE] {
            self.each_segment(lo, hi, Section::X, key.word(), |event| {
                if event.x == key {
                    events.push(event);
                }
            })?;
        }
        Ok(events)
    }

    /// Calls `each` with every record under `key` in `section`, in the
    /// segments whose time range meets [lo, hi].
    fn each_segment(
        &self,
        lo: u32,
        hi: u32,
        section: Section,
        key: u64,
        mut each: impl FnMut(Event),
    ) -> Result<(), HistoryError> {
        let meets = |min: u32, max: u32| max >= lo && min <= hi;
        let mut offsets = Vec::new();
        for segment in &self.sealed {
            if !meets(segment.meta.min_at_s, segment.meta.max_at_s) {
                continue;
            }
            offsets.clear();
            segment
                .lookup(section, key, &mut offsets)
                .map_err(|r| corrupt(&segment.index_path, r))?;
            for &offset in &offsets {
                each(read_sealed(segment, offset)?);
            }
        }
        if let Some(open) = &self.open {
            if open.meta.records > 0 && meets(open.meta.min_at_s, open.meta.max_at_s) {
                offsets.clear();
                open.lookup(section, key, &mut offsets);
                for &offset in &offsets {
                    each(open.read(offset).map_err(|r| corrupt(&open.data_path, r))?);
                }
            }
        }
        Ok(())
    }
}

fn read_sealed(segment: &Sealed, offset: u32) -> Result<Event, HistoryError> {
    read_record(&segment.data, segment.base, offset).map_err(|r| corrupt(&segment.data_path, r))
}
