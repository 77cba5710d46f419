//! Snapshot images: how the table files of one checkpoint travel to a
//! member that fell behind the purged log (docs/STORAGE.md section 19).
//!
//! The pipeline, stage by stage:
//! 1. *Copy* (`copy_checkpoint`, at the leader, while no checkpoint
//!    commits): the table files hold exactly the last checkpoint, so a
//!    copy of them into `DIR/snapshot/<id>/` is a stable image that later
//!    checkpoints, which write the table files in place, cannot touch. The
//!    copy's pages are checked against their checksums before it is named.
//! 2. *Stream* (`write_image`): the image as one byte stream, file by
//!    file, each with its length and a CRC32C of its bytes.
//! 3. *Stage* (`read_image`, at the receiver): the stream is written into a
//!    staging directory, every file's CRC32C and then every page's checksum
//!    are checked; anything malformed is refused with an `ImageError`,
//!    never a panic, and leaves the data directory untouched.
//! 4. *Swap* (`swap_in`): a journal file names the staging directory as
//!    whole and verified; each staged file is renamed over its place in the
//!    data directory; the journal is removed. A crash in between is
//!    finished by `finish_swap` at the next open, since the renames are
//!    idempotent (a file already moved is no longer staged). The tables
//!    must be closed while their files are swapped (their mappings are
//!    private, but pages not yet touched would read the new files).

use super::layout::FileKind;
use super::mapped::PAGE_BYTES;
use std::io::{self, Read, Write};
use std::mem::size_of;
use std::path::{Path, PathBuf};

/// First bytes of an image stream.
pub const IMAGE_MAGIC: [u8; 8] = *b"X700SIMG";
/// Version of the image stream layout.
pub const IMAGE_VERSION: u32 = 1;
/// Most files an image may name: `store`, per shard (at most 256)
/// `meta` and four table files with their `.sum` files, and the registry.
pub const IMAGE_FILES_MAX: u32 = 2 + 256 * 9 + HISTORY_FILES_MAX;
/// Most history files (segments and their indexes) an image may carry.
pub const HISTORY_FILES_MAX: u32 = 200_000;
/// Longest relative path an image may name, in bytes.
pub const IMAGE_PATH_BYTES_MAX: usize = 64;
/// The journal of a swap in progress, in the data directory: present only
/// between a whole, verified staging directory and the end of the renames.
pub const SWAP_JOURNAL_NAME: &str = "snapshot-swap";
/// The store header file (STORAGE.md section 1), named here rather than
/// imported from `store/`, which sits above `table/`.
const STORE_FILE_NAME: &str = "store";
/// The checkpoint manifest (`replication::state_machine::MANIFEST_NAME`),
/// which a staging directory may carry beside the image.
const MANIFEST_NAME: &str = "checkpoint.json";
/// The registry a checkpoint keeps (`tenant::REGISTRY_NAME`).
const REGISTRY_NAME: &str = "registry.json";
/// The traceability history's directory (`tenant::HISTORY_DIR`).
const HISTORY_DIR: &str = "history";
/// Where `read_image` stages an incoming image, in the data directory.
pub const STAGING_NAME: &str = "snapshot-staging";

const TABLE_KINDS: [FileKind; 4] = [
    FileKind::Records,
    FileKind::Cold,
    FileKind::Index,
    FileKind::Overflow,
];

/// Why an image could not be made, read or swapped in.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What the system said.
        source: io::Error,
    },
    /// The stream is not a whole, well-formed image.
    #[error("snapshot image: {0}")]
    Malformed(String),
    /// A page does not match its checksum.
    #[error("snapshot image: {path}: page {page} does not match its checksum")]
    PageMismatch {
        /// The table file.
        path: String,
        /// The page's number.
        page: usize,
    },
    /// A checkpoint is committing in the source directory (its journal is
    /// there): its files are not one checkpoint right now.
    #[error("snapshot image: {0} holds a checkpoint journal")]
    Committing(String),
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> ImageError + '_ {
    move |source| ImageError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn malformed(reason: impl Into<String>) -> ImageError {
    ImageError::Malformed(reason.into())
}

/// The files of one checkpoint, relative to the data directory, in image
/// order: `store`, then each shard directory's `meta`, table files and
/// their `.sum` files, then the registry (`registry.json`, tenants and
/// blocklists, when the directory has one).
pub fn checkpoint_files(data_dir: &Path) -> Result<Vec<PathBuf>, ImageError> {
    let mut shard_dirs = Vec::new();
    for entry in std::fs::read_dir(data_dir).map_err(io_error(data_dir))? {
        let name = entry.map_err(io_error(data_dir))?.file_name();
        let name = name.to_string_lossy();
        if is_shard_dir_name(&name) {
            shard_dirs.push(name.to_string());
        }
    }
    shard_dirs.sort();
    let mut files = vec![PathBuf::from(STORE_FILE_NAME)];
    for shard in shard_dirs {
        let shard = PathBuf::from(shard);
        files.push(shard.join("meta"));
        for kind in TABLE_KINDS {
            files.push(shard.join(kind.file_name()));
            files.push(shard.join(format!("{}.sum", kind.file_name())));
        }
    }
    if data_dir.join(REGISTRY_NAME).exists() {
        files.push(PathBuf::from(REGISTRY_NAME));
    }
    files.extend(history_files(data_dir)?);
    Ok(files)
}

/// The history's segment and index files, relative, in name order (none
/// if the directory has no history).
fn history_files(data_dir: &Path) -> Result<Vec<PathBuf>, ImageError> {
    let dir = data_dir.join(HISTORY_DIR);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error(&dir)(e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let name = entry.map_err(io_error(&dir))?.file_name();
        let name = name.to_string_lossy().to_string();
        if is_history_file_name(&name) {
            names.push(name);
        }
    }
    names.sort();
    Ok(names
        .into_iter()
        .map(|name| Path::new(HISTORY_DIR).join(name))
        .collect())
}

/// `<20 digits>.hlog` or `<20 digits>.hidx`.
fn is_history_file_name(name: &str) -> bool {
    let Some((stem, suffix)) = name.split_once('.') else {
        return false;
    };
    stem.len() == 20
        && stem.bytes().all(|b| b.is_ascii_digit())
        && matches!(suffix, "hlog" | "hidx")
}

fn is_shard_dir_name(name: &str) -> bool {
    name.strip_prefix("shard-")
        .is_some_and(|n| n.len() == 3 && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Whether `path` is one an image may name (see `checkpoint_files`):
/// nothing else, so a stream can never write outside the staging
/// directory.
fn is_image_path(path: &str) -> bool {
    if path == STORE_FILE_NAME || path == REGISTRY_NAME {
        return true;
    }
    let Some((shard, file)) = path.split_once('/') else {
        return false;
    };
    if shard == HISTORY_DIR {
        return is_history_file_name(file);
    }
    is_shard_dir_name(shard)
        && (file == "meta"
            || TABLE_KINDS.iter().any(|kind| {
                file == kind.file_name() || file.strip_suffix(".sum") == Some(kind.file_name())
            }))
}

/// Copies the checkpoint the table files of `data_dir` hold into
/// `image_dir` (which must not exist), checks every page of the copy and
/// syncs it; returns the bytes copied. The caller holds off checkpoints
/// meanwhile. The copy is made under `<image_dir>.new` and renamed, so
/// `image_dir` exists only whole.
pub fn copy_checkpoint(data_dir: &Path, image_dir: &Path) -> Result<u64, ImageError> {
    let partial = image_dir.with_extension("new");
    if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(io_error(&partial))?;
    }
    crate::sys::create_private_dir_all(&partial).map_err(io_error(&partial))?;
    let files = checkpoint_files(data_dir)?;
    let mut bytes = 0;
    for file in &files {
        if let Some(shard) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
            let journal = data_dir.join(shard).join(super::checkpoint::JOURNAL_NAME);
            if journal.exists() {
                return Err(ImageError::Committing(journal.display().to_string()));
            }
            let target = partial.join(shard);
            crate::sys::create_private_dir_all(&target).map_err(io_error(&target))?;
        }
        let target = partial.join(file);
        bytes += std::fs::copy(data_dir.join(file), &target).map_err(io_error(&target))?;
        std::fs::File::open(&target)
            .and_then(|f| f.sync_all())
            .map_err(io_error(&target))?;
    }
    verify_pages(&partial)?;
    sync_dirs(&partial, &files)?;
    std::fs::rename(&partial, image_dir).map_err(io_error(image_dir))?;
    sync_parent(image_dir)?;
    Ok(bytes)
}

/// Checks every page of every table file under `dir` against its `.sum`
/// file (pages past the end of the sums must be zeros, section 14).
pub fn verify_pages(dir: &Path) -> Result<(), ImageError> {
    let zero = super::file::zero_page_sum();
    for file in checkpoint_files(dir)? {
        let Some(kind) = TABLE_KINDS
            .iter()
            .find(|kind| file.file_name().is_some_and(|n| n == kind.file_name()))
        else {
            continue;
        };
        let path = dir.join(&file);
        let sums_path = super::file::sums_path(path.parent().unwrap_or(dir), *kind);
        let content = std::fs::read(&path).map_err(io_error(&path))?;
        let sums = std::fs::read(&sums_path).map_err(io_error(&sums_path))?;
        if sums.len() % 4 != 0 {
            return Err(malformed(format!(
                "{} is not a whole number of checksums",
                sums_path.display()
            )));
        }
        for (page, bytes) in content.chunks(PAGE_BYTES).enumerate() {
            let expected = sums
                .get(page * 4..page * 4 + 4)
                .map_or(zero, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]));
            let mut sum = crc32c::crc32c(bytes);
            if bytes.len() < PAGE_BYTES {
                sum = crc32c::crc32c_append(sum, &vec![0u8; PAGE_BYTES - bytes.len()]);
            }
            if sum != expected {
                return Err(ImageError::PageMismatch {
                    path: path.display().to_string(),
                    page,
                });
            }
        }
    }
    Ok(())
}

/// Writes the image in `image_dir` to `out` (layout in STORAGE.md section
/// 19); returns the bytes written.
pub fn write_image(image_dir: &Path, out: &mut impl Write) -> Result<u64, ImageError> {
    let files = checkpoint_files(image_dir)?;
    let count = u32::try_from(files.len())
        .ok()
        .filter(|&n| n <= IMAGE_FILES_MAX)
        .ok_or_else(|| malformed("too many files"))?;
    let out_error = |e| ImageError::Io {
        path: "snapshot stream".into(),
        source: e,
    };
    let mut header = Vec::with_capacity(16);
    header.extend_from_slice(&IMAGE_MAGIC);
    header.extend_from_slice(&IMAGE_VERSION.to_le_bytes());
    header.extend_from_slice(&count.to_le_bytes());
    out.write_all(&header).map_err(out_error)?;
    let mut written = header.len() as u64;
    let mut buffer = vec![0u8; 1 << 20];
    for file in files {
        let name = file.to_string_lossy().to_string();
        assert!(is_image_path(&name), "image path {name} out of the layout");
        let path = image_dir.join(&file);
        let mut input = std::fs::File::open(&path).map_err(io_error(&path))?;
        let length = input.metadata().map_err(io_error(&path))?.len();
        let name_length = u16::try_from(name.len()).map_err(|_| malformed("path too long"))?;
        out.write_all(&name_length.to_le_bytes())
            .map_err(out_error)?;
        out.write_all(name.as_bytes()).map_err(out_error)?;
        out.write_all(&length.to_le_bytes()).map_err(out_error)?;
        let mut crc = 0;
        let mut left = length;
        while left > 0 {
            let take = usize::try_from(left.min(buffer.len() as u64)).unwrap_or(buffer.len());
            input
                .read_exact(&mut buffer[..take])
                .map_err(io_error(&path))?;
            crc = crc32c::crc32c_append(crc, &buffer[..take]);
            out.write_all(&buffer[..take]).map_err(out_error)?;
            left -= take as u64;
        }
        out.write_all(&crc.to_le_bytes()).map_err(out_error)?;
        written += 2 + name.len() as u64 + 8 + length + 4;
    }
    Ok(written)
}

fn read_array<const N: usize>(input: &mut impl Read, what: &str) -> Result<[u8; N], ImageError> {
    let mut bytes = [0u8; N];
    input
        .read_exact(&mut bytes)
        .map_err(|e| malformed(format!("{what}: {e}")))?;
    Ok(bytes)
}

/// Reads an image stream into `staging` (replaced if it exists), checking
/// each file's CRC32C and then every page; `file_bytes_max` bounds each
/// file. On any error the staging directory is left for the next attempt
/// to replace, and nothing else is touched.
pub fn read_image(
    input: &mut impl Read,
    staging: &Path,
    file_bytes_max: u64,
) -> Result<u64, ImageError> {
    if staging.exists() {
        std::fs::remove_dir_all(staging).map_err(io_error(staging))?;
    }
    crate::sys::create_private_dir_all(staging).map_err(io_error(staging))?;
    if read_array::<8>(input, "magic")? != IMAGE_MAGIC {
        return Err(malformed("not an image (magic)"));
    }
    let version = u32::from_le_bytes(read_array(input, "version")?);
    if version != IMAGE_VERSION {
        return Err(malformed(format!(
            "version {version} is not {IMAGE_VERSION}"
        )));
    }
    let count = u32::from_le_bytes(read_array(input, "file count")?);
    if count == 0 || count > IMAGE_FILES_MAX {
        return Err(malformed(format!("{count} files")));
    }
    let mut files = Vec::new();
    let mut bytes = 0;
    let mut buffer = vec![0u8; 1 << 20];
    for _ in 0..count {
        let name_length = usize::from(u16::from_le_bytes(read_array(input, "path length")?));
        if name_length > IMAGE_PATH_BYTES_MAX {
            return Err(malformed("path too long"));
        }
        let mut name = vec![0u8; name_length];
        input
            .read_exact(&mut name)
            .map_err(|e| malformed(format!("path: {e}")))?;
        let name = String::from_utf8(name).map_err(|_| malformed("path is not UTF-8"))?;
        if !is_image_path(&name) || files.iter().any(|f: &PathBuf| *f == Path::new(&name)) {
            return Err(malformed(format!("unexpected path {name:?}")));
        }
        let length = u64::from_le_bytes(read_array(input, "file length")?);
        if length > file_bytes_max {
            return Err(malformed(format!("{name}: {length} bytes is too large")));
        }
        let path = staging.join(&name);
        if let Some(parent) = path.parent() {
            crate::sys::create_private_dir_all(parent).map_err(io_error(parent))?;
        }
        let mut output = crate::sys::open_or_create_private(
            std::fs::OpenOptions::new().write(true).truncate(true),
            &path,
        )
        .map_err(io_error(&path))?;
        let mut crc = 0;
        let mut left = length;
        while left > 0 {
            let take = usize::try_from(left.min(buffer.len() as u64)).unwrap_or(buffer.len());
            input
                .read_exact(&mut buffer[..take])
                .map_err(|e| malformed(format!("{name}: {e}")))?;
            crc = crc32c::crc32c_append(crc, &buffer[..take]);
            output.write_all(&buffer[..take]).map_err(io_error(&path))?;
            left -= take as u64;
        }
        if u32::from_le_bytes(read_array(input, "file checksum")?) != crc {
            return Err(malformed(format!("{name} does not match its checksum")));
        }
        output.sync_all().map_err(io_error(&path))?;
        bytes += length;
        files.push(PathBuf::from(name));
    }
    if input
        .read(&mut [0u8; 1])
        .map_err(|e| malformed(e.to_string()))?
        != 0
    {
        return Err(malformed("bytes after the last file"));
    }
    // The image must be a whole checkpoint: every file of every shard it
    // names, and the store file.
    let expected = checkpoint_files(staging)?;
    if expected.len() != files.len() || expected.iter().any(|f| !files.contains(f)) {
        return Err(malformed("files are missing"));
    }
    verify_pages(staging)?;
    sync_dirs(staging, &files)?;
    Ok(bytes)
}

/// Makes the staged image `data_dir`'s own: the receiver keeps its `store`
/// file, and with it its nonce, which its log and state files carry too,
/// so the staged table files and meta copies are stamped with that nonce
/// (header and meta checksums, and the `.sum` of each header page,
/// recomputed), after checking both directories have the same number of
/// shards. The staged `store` is then dropped, and every page checked
/// again.
pub fn adopt(staging: &Path, data_dir: &Path) -> Result<(), ImageError> {
    use super::layout::{checksum_of, FileHeader, ShardMeta, StoreHeader, META_MAGIC};
    use std::os::unix::fs::FileExt;
    let read_store = |dir: &Path| -> Result<StoreHeader, ImageError> {
        let path = dir.join(STORE_FILE_NAME);
        let bytes = std::fs::read(&path).map_err(io_error(&path))?;
        if bytes.len() != size_of::<StoreHeader>() {
            return Err(malformed(format!(
                "{} is not a store header",
                path.display()
            )));
        }
        Ok(bytemuck::pod_read_unaligned(&bytes))
    };
    let own = read_store(data_dir)?;
    let image = read_store(staging)?;
    if own.shard_count != image.shard_count {
        return Err(malformed(format!(
            "the image has {} shards, this directory {}",
            image.shard_count, own.shard_count
        )));
    }
    let nonce = own.store_nonce;
    for file in checkpoint_files(staging)? {
        let path = staging.join(&file);
        let name = file.file_name().map(|n| n.to_string_lossy().to_string());
        let kind = TABLE_KINDS
            .iter()
            .find(|kind| name.as_deref() == Some(kind.file_name()));
        let handle = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_error(&path))?;
        if let Some(kind) = kind {
            let mut bytes = [0u8; size_of::<FileHeader>()];
            handle
                .read_exact_at(&mut bytes, 0)
                .map_err(io_error(&path))?;
            let mut header: FileHeader = bytemuck::pod_read_unaligned(&bytes);
            header.store_nonce = nonce;
            header.checksum = checksum_of(&header);
            handle
                .write_all_at(bytemuck::bytes_of(&header), 0)
                .map_err(io_error(&path))?;
            let mut page = vec![0u8; PAGE_BYTES];
            let read = handle.read_at(&mut page, 0).map_err(io_error(&path))?;
            page[read..].fill(0);
            let sums = super::file::sums_path(path.parent().unwrap_or(staging), *kind);
            std::fs::OpenOptions::new()
                .write(true)
                .open(&sums)
                .and_then(|f| {
                    f.write_all_at(&crc32c::crc32c(&page).to_le_bytes(), 0)?;
                    f.sync_all()
                })
                .map_err(io_error(&sums))?;
        } else if name.as_deref() == Some("meta") {
            // Each of the two copies that is valid gets the nonce; a torn
            // one stays torn (its checksum keeps it out).
            for copy in 0..2u64 {
                let mut bytes = [0u8; size_of::<ShardMeta>()];
                if handle.read_exact_at(&mut bytes, copy * 4096).is_err() {
                    continue;
                }
                let mut meta: ShardMeta = bytemuck::pod_read_unaligned(&bytes);
                if meta.magic != META_MAGIC || meta.checksum != checksum_of(&meta) {
                    continue;
                }
                meta.store_nonce = nonce;
                meta.checksum = checksum_of(&meta);
                handle
                    .write_all_at(bytemuck::bytes_of(&meta), copy * 4096)
                    .map_err(io_error(&path))?;
            }
        } else {
            continue;
        }
        handle.sync_all().map_err(io_error(&path))?;
    }
    let store = staging.join(STORE_FILE_NAME);
    std::fs::remove_file(&store).map_err(io_error(&store))?;
    sync_parent(&store)?;
    verify_pages(staging)
}

/// Moves the staged, verified image at `staging` into `data_dir`, through
/// the swap journal (see the module comment). The tables of `data_dir`
/// must be closed.
pub fn swap_in(data_dir: &Path, staging: &Path) -> Result<(), ImageError> {
    begin_swap(data_dir, staging)?;
    finish_swap(data_dir)?;
    Ok(())
}

/// Writes the swap journal naming `staging` (whole and verified): from
/// here the swap happens, at the latest when the store next opens.
pub fn begin_swap(data_dir: &Path, staging: &Path) -> Result<(), ImageError> {
    // Written aside and renamed: a journal is whole, naming the new staging
    // directory or still the previous one.
    let journal = data_dir.join(SWAP_JOURNAL_NAME);
    let temporary = data_dir.join(format!("{SWAP_JOURNAL_NAME}.new"));
    {
        let file = crate::sys::open_or_create_private(
            std::fs::OpenOptions::new().write(true).truncate(true),
            &temporary,
        )
        .map_err(io_error(&temporary))?;
        (&file)
            .write_all(staging.to_string_lossy().as_bytes())
            .map_err(io_error(&temporary))?;
        file.sync_all().map_err(io_error(&temporary))?;
    }
    let previous = std::fs::read(&journal)
        .ok()
        .map(|p| PathBuf::from(String::from_utf8_lossy(&p).to_string()));
    std::fs::rename(&temporary, &journal).map_err(io_error(&journal))?;
    sync_parent(&journal)?;
    // A staging directory the journal named before is no longer needed.
    if let Some(previous) = previous.filter(|p| p != staging) {
        let _ = std::fs::remove_dir_all(previous);
    }
    Ok(())
}

/// Withdraws a swap that never started: if the journal names `staging`,
/// it is removed, then `staging`. Returns whether it named it. For a
/// staged image the receiver journaled and then did not install (another
/// leader, or it turned out no newer than what the node holds).
pub fn cancel_swap(data_dir: &Path, staging: &Path) -> Result<bool, ImageError> {
    let journal = data_dir.join(SWAP_JOURNAL_NAME);
    let named = match std::fs::read(&journal) {
        Ok(bytes) => bytes == staging.to_string_lossy().as_bytes(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => return Err(io_error(&journal)(e)),
    };
    if named {
        std::fs::remove_file(&journal).map_err(io_error(&journal))?;
        sync_parent(&journal)?;
        std::fs::remove_dir_all(staging).map_err(io_error(staging))?;
    }
    Ok(named)
}

/// Finishes a swap a crash interrupted, if the journal says one was under
/// way; returns whether there was one. Called before the tables open.
pub fn finish_swap(data_dir: &Path) -> Result<bool, ImageError> {
    let journal = data_dir.join(SWAP_JOURNAL_NAME);
    let staging = match std::fs::read(&journal) {
        Ok(bytes) => PathBuf::from(
            String::from_utf8(bytes).map_err(|_| malformed("swap journal is not UTF-8"))?,
        ),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_error(&journal)(e)),
    };
    if staging.exists() {
        // The history goes whole: the member's own segments are replaced
        // by the leader's (a directory rename; done again after a crash
        // until the staged directory is gone).
        let staged_history = staging.join(HISTORY_DIR);
        if staged_history.exists() {
            let history = data_dir.join(HISTORY_DIR);
            if history.exists() {
                std::fs::remove_dir_all(&history).map_err(io_error(&history))?;
            }
            std::fs::rename(&staged_history, &history).map_err(io_error(&history))?;
            sync_parent(&history)?;
        }
        let mut files: Vec<PathBuf> = checkpoint_files(&staging)?
            .into_iter()
            .filter(|f| !f.starts_with(HISTORY_DIR))
            .collect();
        // The checkpoint manifest (position and membership) goes last, so
        // it never names a position the tables do not hold yet.
        files.push(PathBuf::from(MANIFEST_NAME));
        move_files(&staging, data_dir, &files)?;
        std::fs::remove_dir_all(&staging).map_err(io_error(&staging))?;
    }
    std::fs::remove_file(&journal).map_err(io_error(&journal))?;
    sync_parent(&journal)?;
    Ok(true)
}

/// Moves the staged files of one shard directory (`shard-NNN`) into
/// `data_dir`, during a swap whose journal is written: the owner of that
/// shard has closed it and opens the moved files next. What else is
/// staged stays for `finish_swap`.
pub fn move_staged_shard(
    staging: &Path,
    data_dir: &Path,
    shard_dir_name: &str,
) -> Result<(), ImageError> {
    let files: Vec<PathBuf> = checkpoint_files(staging)?
        .into_iter()
        .filter(|file| file.starts_with(shard_dir_name))
        .collect();
    if files.is_empty() {
        return Err(malformed(format!("the image has no {shard_dir_name}")));
    }
    move_files(staging, data_dir, &files)
}

/// Renames each of `files` (relative paths) from `staging` over its place
/// in `data_dir`, skipping those already moved (renames are idempotent
/// across a crash), then syncs the directories.
fn move_files(staging: &Path, data_dir: &Path, files: &[PathBuf]) -> Result<(), ImageError> {
    for file in files {
        let from = staging.join(file);
        let to = data_dir.join(file);
        if !from.exists() {
            continue; // moved already
        }
        if let Some(parent) = to.parent() {
            crate::sys::create_private_dir_all(parent).map_err(io_error(parent))?;
        }
        std::fs::rename(&from, &to).map_err(io_error(&to))?;
    }
    sync_dirs(data_dir, files)
}

fn sync_dirs(root: &Path, files: &[PathBuf]) -> Result<(), ImageError> {
    let mut dirs: Vec<PathBuf> = files
        .iter()
        .filter_map(|f| f.parent().map(|p| root.join(p)))
        .collect();
    dirs.push(root.to_path_buf());
    dirs.sort();
    dirs.dedup();
    for dir in dirs {
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io_error(&dir))?;
    }
    Ok(())
}

fn sync_parent(path: &Path) -> Result<(), ImageError> {
    let parent = path.parent().unwrap_or(Path::new("."));
    std::fs::File::open(parent)
        .and_then(|d| d.sync_all())
        .map_err(io_error(parent))
}
