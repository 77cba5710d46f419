//! Reading and writing the fields packed into a `HotRecord`, the binding id
//! encoding, and which index keys a record has.

use super::layout::{entry, meta, HotRecord};
use crate::binding::{BindingId, Direction, Mode};
use crate::number::Number;

/// Bits of the id holding the slot.
const ID_SLOT_BITS: u32 = 24;
/// Bits of the id holding the generation.
const ID_GENERATION_BITS: u32 = 24;

/// A binding id: shard (16 bits) | generation (24) | slot (24).
pub fn compose_id(shard: u16, generation: u32, slot: u32) -> BindingId {
    debug_assert!(generation <= meta::GENERATION_MAX && slot <= entry::SLOT_MASK);
    BindingId(
        (u64::from(shard) << (ID_SLOT_BITS + ID_GENERATION_BITS))
            | (u64::from(generation) << ID_SLOT_BITS)
            | u64::from(slot),
    )
}

/// The parts of an id: (shard, generation, slot). `None` if the shard part
/// is beyond the largest shard count (no id this engine issues has it).
pub fn decompose_id(id: BindingId) -> Option<(u16, u32, u32)> {
    let shard = u16::try_from(id.0 >> (ID_SLOT_BITS + ID_GENERATION_BITS))
        .ok()
        .filter(|&shard| shard < crate::store::SHARDS_MAX)?;
    #[allow(clippy::cast_possible_truncation)] // masked to 24 bits
    let generation = ((id.0 >> ID_SLOT_BITS) as u32) & meta::GENERATION_MASK;
    #[allow(clippy::cast_possible_truncation)] // masked to 24 bits
    let slot = (id.0 as u32) & entry::SLOT_MASK;
    Some((shard, generation, slot))
}

impl HotRecord {
    /// The virtual number.
    #[inline(always)]
    pub fn x(&self) -> Number {
        Number(self.x)
    }

    /// Party A.
    #[inline(always)]
    pub fn a(&self) -> Number {
        Number(self.a)
    }

    /// Party B / default callee / extension key.
    #[inline(always)]
    pub fn b(&self) -> Number {
        Number(self.b)
    }

    /// Slot generation.
    #[inline(always)]
    pub fn generation(&self) -> u32 {
        self.meta & meta::GENERATION_MASK
    }

    /// Mode bits (`meta::MODE_*`).
    #[inline(always)]
    pub fn mode_bits(&self) -> u32 {
        (self.meta >> meta::MODE_SHIFT) & 0b11
    }

    /// The mode of a used record.
    pub fn mode(&self) -> Option<Mode> {
        match self.mode_bits() {
            meta::MODE_AXB => Some(Mode::Axb),
            meta::MODE_AXN => Some(Mode::Axn),
            meta::MODE_AXE => Some(Mode::Axe),
            _ => None,
        }
    }

    /// True for the record that represents its X.
    #[inline(always)]
    pub fn is_representative(&self) -> bool {
        self.meta & meta::REPRESENTATIVE != 0
    }

    /// True for a binding that has not been removed (it may have expired).
    #[inline(always)]
    pub fn is_live(&self) -> bool {
        self.mode_bits() != meta::MODE_FREE
    }

    /// True once the expiry second has come.
    #[inline(always)]
    pub fn is_expired(&self, now_s: u32) -> bool {
        self.expires_at_s <= now_s
    }

    /// Direction control.
    #[inline(always)]
    pub fn direction(&self) -> Direction {
        match (self.meta >> meta::DIRECTION_SHIFT) & 0b11 {
            1 => Direction::AToB,
            2 => Direction::BToA,
            _ => Direction::Both,
        }
    }

    /// Recording flag.
    #[inline(always)]
    pub fn recording(&self) -> bool {
        self.meta & meta::RECORDING != 0
    }

    /// Sets mode, direction and recording, keeping generation and the
    /// representative flag.
    pub fn set_attributes(&mut self, mode: Mode, direction: Direction, recording: bool) {
        let mode_bits = match mode {
            Mode::Axb => meta::MODE_AXB,
            Mode::Axn => meta::MODE_AXN,
            Mode::Axe => meta::MODE_AXE,
        };
        let direction_bits = match direction {
            Direction::Both => 0,
            Direction::AToB => 1,
            Direction::BToA => 2,
        };
        self.meta = (self.meta & (meta::GENERATION_MASK | meta::REPRESENTATIVE))
            | (mode_bits << meta::MODE_SHIFT)
            | (direction_bits << meta::DIRECTION_SHIFT)
            | if recording { meta::RECORDING } else { 0 };
    }

    /// True if this record has the index key (x, party).
    #[inline(always)]
    pub fn has_key(&self, x: Number, party: Number) -> bool {
        if self.x != x.0 || self.mode_bits() == meta::MODE_FREE {
            return false;
        }
        if party.is_none() {
            return self.is_representative();
        }
        match self.mode_bits() {
            meta::MODE_AXB => self.b == party.0 || (self.a == party.0 && !self.is_representative()),
            meta::MODE_AXE => self.b == party.0,
            _ => false,
        }
    }

    /// The index keys this record has, as (x, party) pairs: at most two.
    ///
    /// - representative: (X, NONE);
    /// - AXB: (X, B), and (X, A) unless it is the representative (which
    ///   answers for A through (X, NONE));
    /// - AXE: (X, extension);
    /// - AXN: only (X, NONE).
    pub fn index_keys(&self) -> ([Number; 2], usize) {
        let mut parties = [Number::NONE; 2];
        let mut count = 0;
        if self.is_representative() {
            parties[count] = Number::NONE;
            count += 1;
        }
        match self.mode_bits() {
            meta::MODE_AXB => {
                if !self.is_representative() {
                    parties[count] = self.a();
                    count += 1;
                }
                parties[count] = self.b();
                count += 1;
            }
            meta::MODE_AXE => {
                parties[count] = self.b();
                count += 1;
            }
            _ => {}
        }
        (parties, count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        let id = compose_id(31, meta::GENERATION_MAX, entry::SLOT_MASK);
        assert_eq!(
            decompose_id(id),
            Some((31, meta::GENERATION_MAX, entry::SLOT_MASK))
        );
        assert_eq!(decompose_id(BindingId(u64::MAX)), None);
    }

    #[test]
    fn attributes_keep_generation_and_representative() {
        let mut record = HotRecord {
            meta: 77 | meta::REPRESENTATIVE,
            ..HotRecord::default()
        };
        record.set_attributes(Mode::Axe, Direction::BToA, true);
        assert_eq!(record.generation(), 77);
        assert!(record.is_representative());
        assert_eq!(record.mode(), Some(Mode::Axe));
        assert_eq!(record.direction(), Direction::BToA);
        assert!(record.recording());
        record.set_attributes(Mode::Axb, Direction::Both, false);
        assert!(!record.recording());
        assert_eq!(record.direction(), Direction::Both);
    }
}
