//! The segments of a history directory at run time: the sealed ones (each
//! a data file and its index) and the open one (a data file, a write
//! buffer and the index in memory), with reading one record back.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use super::event::Event;
use super::index::{FileIndex, MemIndex, Meta, Section};
use super::record::{decode, Base, RECORD_BYTES_MAX};

/// How a segment's records are found.
#[derive(Debug)]
pub enum Index {
    /// Being sealed: the index file is being written by the seal thread;
    /// queries use the memory index until it is done.
    Memory(Arc<MemIndex>),
    /// Sealed: the index file.
    File(FileIndex),
}

/// A segment that takes no more records.
#[derive(Debug)]
pub struct Sealed {
    /// What its records are relative to.
    pub base: Base,
    /// Its figures.
    pub meta: Meta,
    /// The data file.
    pub data: File,
    /// The data file's path.
    pub data_path: PathBuf,
    /// The index file's path.
    pub index_path: PathBuf,
    /// Its index.
    pub index: Index,
}

/// The segment taking records.
#[derive(Debug)]
pub struct Open {
    /// What its records are relative to.
    pub base: Base,
    /// Its figures (`data_bytes`: written plus buffered).
    pub meta: Meta,
    /// The data file.
    pub data: File,
    /// The data file's path.
    pub data_path: PathBuf,
    /// Bytes of the data file written (the file's length).
    pub written: u64,
    /// Records encoded but not yet written.
    pub buffer: Vec<u8>,
    /// Its index.
    pub index: MemIndex,
}

/// Reads the record at `offset` of a data file. A record that does not
/// decode (or ends past the end of the file) is corruption: index entries
/// only point at records that were whole when indexed.
pub fn read_record(data: &File, base: Base, offset: u32) -> Result<Event, String> {
    let mut bytes = [0u8; RECORD_BYTES_MAX];
    let mut got = 0;
    while got < bytes.len() {
        match data.read_at(&mut bytes[got..], u64::from(offset) + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("record at {offset}: {e}")),
        }
    }
    decode(&bytes[..got], base)
        .map(|(event, _)| event)
        .map_err(|e| format!("record at {offset}: {e:?}"))
}

impl Open {
    /// Reads the record at `offset`, from the buffer if not yet written.
    pub fn read(&self, offset: u32) -> Result<Event, String> {
        let offset64 = u64::from(offset);
        if offset64 >= self.written {
            // Cannot truncate: the difference is below the buffer's length.
            let at = (offset64 - self.written) as usize;
            let bytes = self.buffer.get(at..).ok_or("offset past the buffer")?;
            decode(bytes, self.base)
                .map(|(event, _)| event)
                .map_err(|e| format!("buffered record at {offset}: {e:?}"))
        } else {
            read_record(&self.data, self.base, offset)
        }
    }

    /// The offsets under `key` in its memory index.
    pub fn lookup(&self, section: Section, key: u64, out: &mut Vec<u32>) {
        lookup_memory(&self.index, section, key, out);
    }
}

/// The offsets under `key` in a memory index.
pub fn lookup_memory(index: &MemIndex, section: Section, key: u64, out: &mut Vec<u32>) {
    match section {
        Section::X => index.x.lookup(key, out),
        Section::Order => index.order.lookup(key, out),
    }
}

impl Sealed {
    /// The offsets under `key`.
    pub fn lookup(&self, section: Section, key: u64, out: &mut Vec<u32>) -> Result<(), String> {
        match &self.index {
            Index::Memory(mem) => {
                lookup_memory(mem, section, key, out);
                Ok(())
            }
            Index::File(file) => file.lookup(section, key, out),
        }
    }
}
