//! Opening a history directory: recovery (see "Crash behaviour" in the
//! module docs of `history`).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::index::{self, MemIndex, Meta};
use super::segment::{self, DATA_SUFFIX, HEADER_BYTES, INDEX_SUFFIX};
use super::store::{Index, Open, Sealed};
use super::{corrupt, io, History, HistoryConfig, HistoryError};

/// A data file scanned back into memory.
struct Rebuilt {
    base: super::record::Base,
    meta: Meta,
    index: MemIndex,
    end: usize,
    torn_bytes: usize,
}

/// Reads and scans a whole data file.
fn rebuild(path: &Path, durable_index: u64, capacity: usize) -> Result<Rebuilt, HistoryError> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    let base = segment::check_header(&bytes).map_err(|r| corrupt(path, r))?;
    let scan = segment::scan(&bytes, base, durable_index);
    let mut meta = Meta::default();
    let mut mem = MemIndex::with_capacity(capacity);
    for (offset, event) in &scan.events {
        meta.add(event, index::span_s(event).unwrap_or(u32::MAX));
        mem.add(*offset, event);
    }
    meta.data_bytes = scan.end as u64;
    Ok(Rebuilt {
        base,
        meta,
        index: mem,
        end: scan.end,
        torn_bytes: scan.torn_bytes,
    })
}

impl History {
    /// Opens (or creates) the history in `dir`. Drops every event at or past
    /// `durable_index` found on disk: the log replays those and `append`
    /// writes them again. `append` skips events at or below the last log
    /// index kept, so a replay from any earlier index is idempotent. The
    /// caller's contract: `sync` covered every index below `durable_index`
    /// (then what is kept is whole). `u64::MAX` keeps everything on disk.
    pub fn open(
        dir: &Path,
        config: HistoryConfig,
        durable_index: u64,
    ) -> Result<History, HistoryError> {
        assert!(config.segment_records_max >= 1);
        crate::sys::create_private_dir_all(dir).map_err(io(dir))?;
        let mut data_files = BTreeMap::new();
        for entry in std::fs::read_dir(dir).map_err(io(dir))? {
            let entry = entry.map_err(io(dir))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.ends_with(".hidx.tmp") {
                std::fs::remove_file(entry.path()).map_err(io(&entry.path()))?;
            } else if let Some(first) = segment::parse_name(name, DATA_SUFFIX) {
                data_files.insert(first, entry.path());
            }
        }
        let mut history = History {
            dir: dir.to_path_buf(),
            config,
            sealed: Vec::new(),
            open: None,
            pending: None,
            floor: durable_index,
            last_index: None,
            torn_bytes: 0,
            spare: None,
        };
        // Segments that begin at or past the durable index hold only events
        // the log replays.
        let keep: Vec<(u64, std::path::PathBuf)> = data_files
            .into_iter()
            .filter_map(|(first, path)| {
                if first >= durable_index {
                    let _ = std::fs::remove_file(&path);
                    let _ = std::fs::remove_file(path.with_extension(INDEX_SUFFIX));
                    None
                } else {
                    Some((first, path))
                }
            })
            .collect();
        let count = keep.len();
        for (i, (first, data_path)) in keep.into_iter().enumerate() {
            let index_path = dir.join(segment::file_name(first, INDEX_SUFFIX));
            let data_len = std::fs::metadata(&data_path).map_err(io(&data_path))?.len();
            let last = i + 1 == count;
            if last && data_len < HEADER_BYTES as u64 {
                // A crash between creating the file and writing its header.
                std::fs::remove_file(&data_path).map_err(io(&data_path))?;
                continue;
            }
            let sealed_index = index::open(&index_path)
                .ok()
                .filter(|(_, meta)| meta.data_bytes == data_len && meta.last_index < durable_index);
            match sealed_index {
                Some((file_index, meta)) => {
                    let data = File::open(&data_path).map_err(io(&data_path))?;
                    let mut head = [0u8; HEADER_BYTES];
                    data.read_exact_at(&mut head, 0).map_err(io(&data_path))?;
                    let base = segment::check_header(&head).map_err(|r| corrupt(&data_path, r))?;
                    history.last_index = Some(meta.last_index);
                    history.sealed.push(Sealed {
                        base,
                        meta,
                        data,
                        data_path,
                        index_path,
                        index: Index::File(file_index),
                    });
                }
                None if !last => {
                    let rebuilt = rebuild(&data_path, durable_index, 0)?;
                    if rebuilt.torn_bytes > 0 || rebuilt.end as u64 != data_len {
                        return Err(corrupt(
                            &data_path,
                            format!(
                                "a record at byte {} does not decode in a sealed segment",
                                rebuilt.end
                            ),
                        ));
                    }
                    let file_index = index::write(&index_path, &rebuilt.index, &rebuilt.meta)
                        .map_err(io(&index_path))?;
                    let data = File::open(&data_path).map_err(io(&data_path))?;
                    history.last_index = Some(rebuilt.meta.last_index);
                    history.sealed.push(Sealed {
                        base: rebuilt.base,
                        meta: rebuilt.meta,
                        data,
                        data_path,
                        index_path,
                        index: Index::File(file_index),
                    });
                }
                None => {
                    let _ = std::fs::remove_file(&index_path);
                    let rebuilt =
                        rebuild(&data_path, durable_index, config.memory_index_records())?;
                    history.torn_bytes += rebuilt.torn_bytes as u64;
                    if rebuilt.meta.records == 0 {
                        std::fs::remove_file(&data_path).map_err(io(&data_path))?;
                        continue;
                    }
                    let data = OpenOptions::new()
                        .read(true)
                        .write(true)
                        .open(&data_path)
                        .map_err(io(&data_path))?;
                    data.set_len(rebuilt.end as u64).map_err(io(&data_path))?;
                    data.sync_all().map_err(io(&data_path))?;
                    history.last_index = Some(rebuilt.meta.last_index);
                    history.open = Some(Open {
                        base: rebuilt.base,
                        meta: rebuilt.meta,
                        data,
                        data_path,
                        written: rebuilt.end as u64,
                        buffer: Vec::new(),
                        index: rebuilt.index,
                    });
                }
            }
        }
        // What is on disk below the durable index is complete (the caller
        // synced through it before saying so): replay starts after it.
        history.floor = history.last_index.map_or(0, |l| l + 1);
        Ok(history)
    }
}
