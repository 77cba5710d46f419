//! The two questions, as pure functions over the events a lookup gathered:
//! fold each binding's events into its life, and decide whether a life
//! routed X at a given second.

use std::collections::BTreeMap;

use super::event::{Event, EventKind, Life};
use crate::number::Number;

/// Groups events by binding and sorts each group into log order. Duplicates
/// (the same record reached twice) are dropped.
pub fn by_binding(mut events: Vec<Event>) -> BTreeMap<u64, Vec<Event>> {
    events.sort_by_key(|e| (e.binding_id, e.log_index, e.kind.code()));
    events.dedup();
    let mut groups: BTreeMap<u64, Vec<Event>> = BTreeMap::new();
    for event in events {
        groups.entry(event.binding_id).or_default().push(event);
    }
    groups
}

/// Folds one binding's events (log order) into its life. `None` when its
/// `Created` is not among them (purged with an older segment): the history
/// does not invent the fields it no longer has.
///
/// `Updated` sets the expiry and replaces A, B and the order when it carries
/// them (not empty); the first end event ends the life.
pub fn fold(events: &[Event]) -> Option<Life> {
    let created = events.iter().find(|e| e.kind == EventKind::Created)?;
    let mut life = Life {
        binding_id: created.binding_id,
        tenant: created.tenant,
        mode: created.mode,
        x: created.x,
        a: created.a,
        b: created.b,
        order: created.order.clone(),
        credential: created.credential,
        created_s: created.at_s,
        ended_s: None,
        end: None,
        expires_at_s: created.expires_at_s,
    };
    for event in events.iter().filter(|e| e.log_index >= created.log_index) {
        match event.kind {
            EventKind::Created => {}
            EventKind::Updated if life.end.is_none() => {
                life.expires_at_s = event.expires_at_s;
                if !event.a.is_none() {
                    life.a = event.a;
                }
                if !event.b.is_none() {
                    life.b = event.b;
                }
                if !event.order.is_empty() {
                    life.order.clone_from(&event.order);
                }
            }
            EventKind::Updated => {}
            EventKind::Unbound | EventKind::Expired => {
                if life.end.is_none() {
                    life.end = Some(event.kind);
                    life.ended_s = Some(event.at_s);
                }
            }
        }
    }
    Some(life)
}

/// True if the binding routed its X at second `at_s`: created at or before
/// it, not ended at or before it, and the expiry in force then (from the
/// last `Created` or `Updated` at or before `at_s`) still ahead. A life is
/// the half-open interval [created, end): at its end second it is gone, as
/// an expired binding is never routed at its expiry second.
pub fn live_at(events: &[Event], at_s: u32) -> bool {
    let mut expiry = None;
    for event in events.iter().filter(|e| e.at_s <= at_s) {
        match event.kind {
            EventKind::Created => expiry = Some(event.expires_at_s),
            EventKind::Updated => {
                if expiry.is_some() {
                    expiry = Some(event.expires_at_s);
                }
            }
            EventKind::Unbound | EventKind::Expired => return false,
        }
    }
    expiry.is_some_and(|e| e > at_s)
}

/// True if the life concerns `caller`. AXB (mode 0): only when the caller is
/// A or B (anyone else was rejected). AXN (1): X belongs to A alone and every
/// caller reached A, so every caller matches. AXE (2): the binding answered
/// anyone who dialled its extension, so every caller matches too.
pub fn concerns(life: &Life, caller: Number) -> bool {
    life.mode != 0 || life.a == caller || life.b == caller
}

/// Sorts an answer: by creation time, then binding id.
pub fn sort(lives: &mut [Life]) {
    lives.sort_by_key(|l| (l.created_s, l.binding_id));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: EventKind, at_s: u32, log_index: u64, expires_at_s: u32) -> Event {
        let mut e = Event::new(kind, at_s, log_index, 1);
        e.expires_at_s = expires_at_s;
        e
    }

    #[test]
    fn a_life_is_the_half_open_interval_from_creation_to_its_end() {
        let events = [
            ev(EventKind::Created, 100, 1, 500),
            ev(EventKind::Unbound, 200, 2, 0),
        ];
        assert!(!live_at(&events, 99));
        assert!(live_at(&events, 100));
        assert!(live_at(&events, 199));
        assert!(!live_at(&events, 200));
        let life = fold(&events).unwrap();
        assert_eq!(
            (life.ended_s, life.end),
            (Some(200), Some(EventKind::Unbound))
        );
    }

    #[test]
    fn the_expiry_in_force_at_the_second_decides_not_the_last_one() {
        // Created to expire at 300; at 250 extended to 900.
        let events = [
            ev(EventKind::Created, 100, 1, 300),
            ev(EventKind::Updated, 250, 2, 900),
        ];
        assert!(live_at(&events, 299));
        assert!(live_at(&events, 800));
        // Shortened at 250 to 260: at 200 the old expiry 300 still held.
        let events = [
            ev(EventKind::Created, 100, 1, 300),
            ev(EventKind::Updated, 250, 2, 260),
        ];
        assert!(live_at(&events, 200));
        assert!(!live_at(&events, 270));
        assert_eq!(fold(&events).unwrap().expires_at_s, 260);
    }
}
