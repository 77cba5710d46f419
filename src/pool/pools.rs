//! Every tenant's pool: ranges of 700 numbers, none overlapping another
//! (whoever owns it), found by X in O(log ranges).
//!
//! A range costs one map entry whatever its size: nothing here grows with
//! the numbers a range holds (the allocator pays for numbers in use).

use super::area::{AreaCode, Province};
use super::codec::{write_header, write_trailer, Corrupt, Reader};
use super::range::{x_value, PoolRange, RANGE_NUMBERS_MAX, X_VALUE_MAX, X_VALUE_MIN};
use crate::number::Number;
use std::collections::{BTreeMap, BTreeSet};

/// Most ranges one tenant may hold.
pub const TENANT_RANGES_MAX: usize = 4096;
/// Most ranges in all pools together.
pub const RANGES_MAX: usize = 65_536;

/// Magic of the pools checkpoint (`docs/STORAGE.md` is the lead's to write;
/// the layout is in [`Pools::encode`]).
const MAGIC: &[u8; 4] = b"X7PL";
/// Version of the pools checkpoint.
const VERSION: u16 = 1;

/// Why a pool change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// `first` or `last` is not a 15-digit 700 number.
    #[error("{0} is not a 700 number")]
    NotVirtual(u64),
    /// `first` is above `last`.
    #[error("range {first}-{last} is reversed")]
    Reversed {
        /// As given.
        first: u64,
        /// As given.
        last: u64,
    },
    /// The range holds more than `RANGE_NUMBERS_MAX` numbers.
    #[error("range holds {numbers} numbers, more than {RANGE_NUMBERS_MAX}")]
    TooLarge {
        /// Numbers in the range asked for.
        numbers: u64,
    },
    /// The range overlaps one already in a pool (this tenant's or another's).
    #[error("range overlaps {first}-{last} of tenant {tenant}")]
    Overlap {
        /// The tenant holding the overlapped range.
        tenant: u32,
        /// The overlapped range's first number.
        first: u64,
        /// The overlapped range's last number.
        last: u64,
    },
    /// The tenant, or all pools together, hold the most ranges allowed.
    #[error("too many ranges (at most {TENANT_RANGES_MAX} per tenant, {RANGES_MAX} in all)")]
    TooManyRanges,
    /// The area is not in the default table and the range names no province.
    #[error("area {0} has no default province: name one")]
    NoProvince(AreaCode),
    /// No range of this tenant is exactly `first`-`last`.
    #[error("tenant has no range {first}-{last}")]
    NotFound {
        /// As given.
        first: u64,
        /// As given.
        last: u64,
    },
    /// The range has numbers in live bindings and the removal was not forced.
    #[error("{numbers_in_use} numbers of the range are in use (force to remove anyway)")]
    InUse {
        /// Numbers of the range in live bindings.
        numbers_in_use: u64,
    },
    /// A checkpoint could not be decoded.
    #[error(transparent)]
    Corrupt(#[from] Corrupt),
}

/// What a removal took away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoveOutcome {
    /// The range removed.
    pub range: PoolRange,
    /// Numbers of it still in live bindings (non-zero only when forced).
    /// Those bindings live on until they end; the allocator never chooses
    /// from the range again.
    pub numbers_in_use: u64,
}

/// One range and its owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    tenant: u32,
    range: PoolRange,
}

/// Every tenant's ranges (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pools {
    /// Every range by its first number: `owner` is one `range(..=x)` step.
    by_first: BTreeMap<u64, Entry>,
    /// Each tenant's ranges as (area, first): a tenant's areas in order, and
    /// each area's ranges in ascending X order.
    by_tenant: BTreeMap<u32, BTreeSet<(AreaCode, u64)>>,
}

impl Pools {
    /// No ranges.
    pub fn new() -> Pools {
        Pools::default()
    }

    /// Adds `range` to `tenant`'s pool. Refused unless both ends are 700
    /// numbers, `first <= last`, it holds at most `RANGE_NUMBERS_MAX`
    /// numbers, it overlaps no range of any tenant, its province is known,
    /// and the range limits hold.
    pub fn add(&mut self, tenant: u32, range: PoolRange) -> Result<(), PoolError> {
        for end in [range.first, range.last] {
            if !(X_VALUE_MIN..=X_VALUE_MAX).contains(&end) {
                return Err(PoolError::NotVirtual(end));
            }
        }
        if range.first > range.last {
            return Err(PoolError::Reversed {
                first: range.first,
                last: range.last,
            });
        }
        if range.numbers() > RANGE_NUMBERS_MAX {
            return Err(PoolError::TooLarge {
                numbers: range.numbers(),
            });
        }
        if range.province == Province::Unknown {
            return Err(PoolError::NoProvince(range.area));
        }
        // Ranges never overlap, so only the last range starting at or
        // before `range.last` can overlap this one.
        if let Some((_, entry)) = self.by_first.range(..=range.last).next_back() {
            if entry.range.last >= range.first {
                return Err(PoolError::Overlap {
                    tenant: entry.tenant,
                    first: entry.range.first,
                    last: entry.range.last,
                });
            }
        }
        let tenant_ranges = self.by_tenant.get(&tenant).map_or(0, BTreeSet::len);
        if tenant_ranges >= TENANT_RANGES_MAX || self.by_first.len() >= RANGES_MAX {
            return Err(PoolError::TooManyRanges);
        }
        self.by_first.insert(range.first, Entry { tenant, range });
        self.by_tenant
            .entry(tenant)
            .or_default()
            .insert((range.area, range.first));
        Ok(())
    }

    /// Removes `tenant`'s range `first`-`last`. The match is exact: a
    /// sub-range or a span of several ranges is `NotFound` (split a range by
    /// removing it and adding its parts). `in_use(first, last)` counts the
    /// range's numbers in live bindings (`Allocator::in_use`); any makes the
    /// removal refused unless `force`.
    pub fn remove(
        &mut self,
        tenant: u32,
        first: u64,
        last: u64,
        force: bool,
        in_use: impl Fn(u64, u64) -> u64,
    ) -> Result<RemoveOutcome, PoolError> {
        let entry = match self.by_first.get(&first) {
            Some(entry) if entry.tenant == tenant && entry.range.last == last => *entry,
            _ => return Err(PoolError::NotFound { first, last }),
        };
        let numbers_in_use = in_use(first, last);
        if numbers_in_use > 0 && !force {
            return Err(PoolError::InUse { numbers_in_use });
        }
        self.by_first.remove(&first);
        if let Some(ranges) = self.by_tenant.get_mut(&tenant) {
            ranges.remove(&(entry.range.area, first));
            if ranges.is_empty() {
                self.by_tenant.remove(&tenant);
            }
        }
        Ok(RemoveOutcome {
            range: entry.range,
            numbers_in_use,
        })
    }

    /// The tenant and range holding `x`, if any. O(log ranges).
    pub fn owner(&self, x: Number) -> Option<(u32, &PoolRange)> {
        self.owner_of_value(x_value(x)?)
    }

    /// [`Pools::owner`] for an X value.
    pub fn owner_of_value(&self, x: u64) -> Option<(u32, &PoolRange)> {
        let (_, entry) = self.by_first.range(..=x).next_back()?;
        entry
            .range
            .contains(x)
            .then_some((entry.tenant, &entry.range))
    }

    /// `tenant`'s ranges, by area then ascending X.
    pub fn ranges(&self, tenant: u32) -> impl Iterator<Item = &PoolRange> + Clone + '_ {
        self.by_tenant
            .get(&tenant)
            .into_iter()
            .flatten()
            .filter_map(|(_, first)| self.by_first.get(first).map(|entry| &entry.range))
    }

    /// `tenant`'s ranges in `area`, ascending.
    pub fn area_ranges(
        &self,
        tenant: u32,
        area: AreaCode,
    ) -> impl Iterator<Item = &PoolRange> + Clone + '_ {
        self.by_tenant
            .get(&tenant)
            .into_iter()
            .flat_map(move |set| set.range((area, 0)..=(area, u64::MAX)))
            .filter_map(|(_, first)| self.by_first.get(first).map(|entry| &entry.range))
    }

    /// Every tenant holding at least one range, ascending.
    pub fn tenants(&self) -> impl Iterator<Item = u32> + '_ {
        self.by_tenant.keys().copied()
    }

    /// Ranges in all pools.
    pub fn len(&self) -> usize {
        self.by_first.len()
    }

    /// True if no tenant holds a range.
    pub fn is_empty(&self) -> bool {
        self.by_first.is_empty()
    }

    /// Appends the checkpoint encoding, all fields little-endian:
    /// `"X7PL"`, version u16 (1), range count u32, then per range in
    /// ascending `first`: tenant u32, first u64, last u64, area length u8,
    /// area digits 4 bytes (ASCII, zero padded), province u8 (26 bytes);
    /// then the CRC32C of everything before it, u32.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = write_header(out, MAGIC, VERSION);
        // `add` keeps the count at most RANGES_MAX, far below u32::MAX.
        out.extend_from_slice(&(self.by_first.len() as u32).to_le_bytes());
        for entry in self.by_first.values() {
            out.extend_from_slice(&entry.tenant.to_le_bytes());
            out.extend_from_slice(&entry.range.first.to_le_bytes());
            out.extend_from_slice(&entry.range.last.to_le_bytes());
            entry.range.area.encode(out);
            out.push(entry.range.province.code());
        }
        write_trailer(out, start);
    }

    /// Decodes [`Pools::encode`]. Every range goes through [`Pools::add`]'s
    /// checks again, so a corrupt checkpoint is an error, never a pool that
    /// breaks the rules.
    pub fn decode(bytes: &[u8]) -> Result<Pools, PoolError> {
        let mut reader = Reader::open(bytes, MAGIC, VERSION)?;
        let count = reader.u32()?;
        let mut pools = Pools::new();
        for _ in 0..count {
            let tenant = reader.u32()?;
            let first = reader.u64()?;
            let last = reader.u64()?;
            let area = AreaCode::decode(reader.take()?).ok_or(Corrupt("bad area code"))?;
            let province = Province::from_code(reader.u8()?).ok_or(Corrupt("bad province"))?;
            pools.add(
                tenant,
                PoolRange {
                    first,
                    last,
                    area,
                    province,
                },
            )?;
        }
        if reader.remaining() != 0 {
            return Err(Corrupt("trailing bytes").into());
        }
        Ok(pools)
    }
}
