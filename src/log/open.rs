//! Opening the log: every segment checked, a torn tail cut off the last
//! one, damage anywhere else refused, segments left by an interrupted purge
//! removed, and the stored committed position checked against what the
//! segments hold.

use super::*;

impl Log {
    /// Opens the log in `<data>/log` (creating it if new): checks every
    /// segment, cuts a torn tail off the last one, refuses damage anywhere
    /// else, and removes segments left over from an interrupted purge.
    pub fn open(data_dir: &Path, nonce: u64) -> Result<(Log, Recovery), LogError> {
        let dir = data_dir.join(LOG_DIR_NAME);
        if !dir.exists() {
            crate::sys::create_private_dir_all(&dir).map_err(|e| LogError::io(&dir, e))?;
            sync_dir(data_dir)?;
        }
        let (state_file, state) = StateFile::open_or_create(&dir, nonce)?;
        let mut names: Vec<(u64, PathBuf)> = Vec::new();
        for item in std::fs::read_dir(&dir).map_err(|e| LogError::io(&dir, e))? {
            let path = item.map_err(|e| LogError::io(&dir, e))?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if let Some(first) = name
                .strip_suffix(".seg")
                .and_then(|n| n.parse::<u64>().ok())
            {
                names.push((first, path));
            }
        }
        names.sort();
        let mut recovery = Recovery::default();
        let mut segments: Vec<Segment> = Vec::new();
        let purged_upto = state.purged.map(|p| p.index);
        let count = names.len();
        for (position, (first, path)) in names.into_iter().enumerate() {
            let is_last = position + 1 == count;
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(|e| LogError::io(&path, e))?;
            let bytes = std::fs::read(&path).map_err(|e| LogError::io(&path, e))?;
            let declared =
                segment::check_header(&bytes, nonce).map_err(|reason| LogError::Corrupt {
                    path: path.display().to_string(),
                    offset: 0,
                    reason,
                })?;
            if declared != first {
                return Err(LogError::Corrupt {
                    path: path.display().to_string(),
                    offset: 24,
                    reason: format!("header says first index {declared}, the name says {first}"),
                });
            }
            let found = scan(&bytes, first);
            match found.tail {
                Tail::Clean => {}
                Tail::Torn { offset, reason } if is_last => {
                    // Zero what the torn write left, so later scans and
                    // appends see a clean end.
                    let written = bytes.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
                    let zeros = vec![0u8; written.saturating_sub(offset as usize)];
                    file.write_all_at(&zeros, offset)
                        .and_then(|()| file.sync_data())
                        .map_err(|e| LogError::io(&path, e))?;
                    eprintln!(
                        "x700: log: cut a torn record ({reason}) at {}:{offset}",
                        path.display()
                    );
                    recovery
                        .torn_tails_cut
                        .push((path.display().to_string(), offset));
                }
                Tail::Torn { offset, reason } => {
                    return Err(LogError::Corrupt {
                        path: path.display().to_string(),
                        offset,
                        reason: format!("{reason} in a segment that is not the last"),
                    })
                }
                Tail::Corrupt { offset, reason } => {
                    return Err(LogError::Corrupt {
                        path: path.display().to_string(),
                        offset,
                        reason,
                    })
                }
            }
            let segment = Segment {
                first_index: first,
                path,
                file: Arc::new(file),
                offsets: found.offsets,
                end: found.end,
            };
            if let Some(previous) = segments.last() {
                let due = previous.first_index + previous.offsets.len() as u64;
                if segment.first_index != due {
                    return Err(LogError::Corrupt {
                        path: segment.path.display().to_string(),
                        offset: 24,
                        reason: format!(
                            "starts at index {} but the previous segment ends before {due}",
                            segment.first_index
                        ),
                    });
                }
            }
            recovery.records += segment.offsets.len() as u64;
            segments.push(segment);
        }
        // A purge writes the state first, then removes segments: finish one
        // that a crash interrupted.
        while segments.len() > 1
            && segments[0]
                .last_index()
                .zip(purged_upto)
                .is_some_and(|(last, purged)| last <= purged)
        {
            let gone = segments.remove(0);
            std::fs::remove_file(&gone.path).map_err(|e| LogError::io(&gone.path, e))?;
        }
        let mut log = Log {
            dir,
            nonce,
            segments,
            spare: None,
            state_file,
            state,
            last: None,
            buffer: Vec::new(),
            health: Arc::new(LogHealth::default()),
            headroom_checked: None,
        };
        if log.segments.is_empty() {
            let first = log.state.purged.map_or(0, |p| p.index + 1);
            let segment = log.new_segment(first)?;
            log.segments.push(segment);
        }
        log.last = log.read_last()?;
        if log.last.is_none() {
            log.last = log.state.purged;
        }
        log.state.committed = log.clamp_committed(log.state.committed)?;
        log.prepare_spare();
        Ok((log, recovery))
    }

    /// The stored committed position, made to fit the log as it opened.
    /// It is written without `fdatasync` (`StateFile::write_committed`),
    /// and a follower saves it before its appends are durable, so after a
    /// power loss it may name an entry the log lost: it is then lowered to
    /// the log's last entry, which is committed too (the entries up to the
    /// stored position were the leader's, and a truncation is durable
    /// before anything is written after it). If the log holds another entry
    /// at that index (a term or leader that differs), it is not trusted and
    /// only the purged position, which the checkpoint holds, counts.
    fn clamp_committed(
        &self,
        stored: Option<LogPosition>,
    ) -> Result<Option<LogPosition>, LogError> {
        let Some(stored) = stored else {
            return Ok(None);
        };
        let purged = self.state.purged;
        if purged.is_some_and(|p| stored.index <= p.index) {
            return Ok(Some(stored));
        }
        let Some(last) = self.last else {
            return Ok(None);
        };
        let index = stored.index.min(last.index);
        let found = if index == last.index {
            Some(last)
        } else {
            self.read(index, index + 1)?.first().map(|r| LogPosition {
                index: r.index,
                term: r.term,
                leader: r.leader,
            })
        };
        match found {
            Some(found) if index < stored.index => Ok(Some(found)),
            Some(found) if (found.term, found.leader) == (stored.term, stored.leader) => {
                Ok(Some(stored))
            }
            _ => {
                eprintln!(
                    "x700: log: the stored commit index {} (term {}) does not match the log; \
                     only the purged position counts as committed",
                    stored.index, stored.term
                );
                Ok(purged)
            }
        }
    }

    pub(super) fn read_last(&self) -> Result<Option<LogPosition>, LogError> {
        let Some(index) = self.segments.iter().rev().find_map(Segment::last_index) else {
            return Ok(None);
        };
        Ok(self.read(index, index + 1)?.first().map(|r| LogPosition {
            index: r.index,
            term: r.term,
            leader: r.leader,
        }))
    }
}
