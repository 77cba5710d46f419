//! What keeps others out of a data directory. The directory holds real
//! phone numbers and memory-mapped tables that only one process may write:
//! - the lock: one x700 process at a time may use a directory. It is an
//!   `flock` on the directory itself, held for the process's life, so
//!   deleting the `LOCK` note does not release it; a second process gets a
//!   clear error naming the directory and the holder instead of mapping
//!   files another process is writing;
//! - the permissions: x700 creates the directory `0700` and every file in it
//!   `0600` (`crate::sys::create_private` and friends), and reports anything
//!   group or others can reach (`loose_permissions`), without changing it.

use crate::sys::{PRIVATE_DIR_MODE, PRIVATE_FILE_MODE};
use crate::table::TableError;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Name of the note inside a data directory that names the lock's holder.
/// It is only a note: the exclusion is the directory's own `flock`.
pub const LOCK_FILE_NAME: &str = "LOCK";

/// Deepest level below the data directory that `loose_permissions` looks
/// at (the layout has two: `DIR/shard-000/records`, `DIR/log/state`).
const SCAN_DEPTH_MAX: usize = 4;

/// Most paths `loose_permissions` reports; a directory with more is loose
/// enough that the first ones say what to do.
pub const LOOSE_PATHS_MAX: usize = 1000;

/// Permission bits for group and others.
const GROUP_OTHER_BITS: u32 = 0o077;

/// Held for as long as the directory is open; released on drop (and by the
/// kernel if the process dies).
#[derive(Debug)]
pub struct DirLock {
    /// The data directory opened read-only, carrying the `flock`.
    _directory: File,
}

impl DirLock {
    /// Takes the directory's lock or reports who holds it, then records this
    /// process in the `LOCK` note.
    pub fn acquire(dir: &Path) -> Result<DirLock, TableError> {
        // The lock is on the directory's inode, which nothing can delete
        // while the directory is in use: a lock on a file inside it would
        // end the moment someone removed that file.
        let directory = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY)
            .open(dir)
            .map_err(|e| TableError::io(dir, e))?;
        let note = dir.join(LOCK_FILE_NAME);
        if !crate::sys::try_lock_exclusive(&directory) {
            let holder = std::fs::read_to_string(&note).map_or_else(
                |_| format!("its {LOCK_FILE_NAME} note is missing, so the holder is unknown"),
                |text| text.trim().to_string(),
            );
            return Err(TableError::Locked {
                path: dir.display().to_string(),
                holder,
            });
        }
        let me = format!(
            "pid {} ({})",
            std::process::id(),
            std::env::args().next().unwrap_or_default()
        );
        crate::sys::open_or_create_private(OpenOptions::new().write(true).truncate(true), &note)
            .and_then(|mut file| file.write_all(me.as_bytes()))
            .map_err(|e| TableError::io(&note, e))?;
        Ok(DirLock {
            _directory: directory,
        })
    }
}

/// A path in a data directory that group or others can reach.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoosePath {
    /// The path.
    pub path: PathBuf,
    /// Its permission bits (`mode & 0o7777`).
    pub mode: u32,
    /// True for a directory (which should be `0700`), false for a file
    /// (`0600`).
    pub is_dir: bool,
}

impl LoosePath {
    /// The mode as `chmod` spells it, four octal digits: `0644`.
    pub fn mode_text(&self) -> String {
        format!("{:04o}", self.mode)
    }

    /// The mode it should have.
    pub fn wanted_mode_text(&self) -> String {
        let wanted = if self.is_dir {
            PRIVATE_DIR_MODE
        } else {
            PRIVATE_FILE_MODE
        };
        format!("{wanted:04o}")
    }
}

/// Every path in the data directory `dir` (the directory itself included)
/// that its group or others may read, write or enter: any of the mode's
/// `0o077` bits set. Symbolic links are neither reported nor followed (their
/// own mode means nothing on Linux). At most `LOOSE_PATHS_MAX` are returned.
pub fn loose_permissions(dir: &Path) -> std::io::Result<Vec<LoosePath>> {
    let mut loose = Vec::new();
    scan(dir, 0, &mut loose)?;
    Ok(loose)
}

fn scan(path: &Path, depth: usize, loose: &mut Vec<LoosePath>) -> std::io::Result<()> {
    if loose.len() >= LOOSE_PATHS_MAX {
        return Ok(());
    }
    let metadata = match std::fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        // Gone since its directory was listed: nothing left to report.
        Err(error) if depth > 0 && error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(error),
    };
    if metadata.file_type().is_symlink() {
        return Ok(());
    }
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & GROUP_OTHER_BITS != 0 {
        loose.push(LoosePath {
            path: path.to_path_buf(),
            mode,
            is_dir: metadata.is_dir(),
        });
    }
    if metadata.is_dir() && depth < SCAN_DEPTH_MAX {
        let mut children: Vec<PathBuf> = std::fs::read_dir(path)?
            .map(|entry| entry.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        children.sort();
        for child in children {
            scan(&child, depth + 1, loose)?;
        }
    }
    Ok(())
}

/// Says on stderr, in one line, if group or others can reach anything in
/// `dir`. A node (and every offline command) warns and carries on: it never
/// changes the mode of what it did not create, since an operator may have
/// widened it on purpose, and `x700 check` lists the paths and fails.
pub fn warn_if_loose(dir: &Path) {
    match loose_permissions(dir) {
        Ok(loose) if loose.is_empty() => {}
        Ok(loose) => eprintln!(
            "x700: warning: {} path(s) in the data directory {} are open to group or others \
             (first: {} mode {}); it holds real phone numbers: `chmod -R go-rwx {}` \
             (`x700 check --data {}` lists them)",
            loose.len(),
            dir.display(),
            loose[0].path.display(),
            loose[0].mode_text(),
            dir.display(),
            dir.display(),
        ),
        Err(error) => eprintln!(
            "x700: warning: cannot check the permissions of {}: {error}",
            dir.display()
        ),
    }
}
