//! Checks the start makes around opening the data directory: the
//! open-file limit against `connections_max`, the member ids a cluster's
//! data directory is claimed for, and the background check of the cold
//! files' pages.

use super::config::{self, Config, ConfigError};
use super::StartError;

/// Descriptors kept free beside `connections_max` for the data directory's
/// files, log segments, the admin port and the event loops' own.
pub const DESCRIPTORS_RESERVED: u64 = 512;

/// Raises the open-file limit to its hard maximum and checks that
/// `connections_max` fits under it (less `DESCRIPTORS_RESERVED`). An
/// explicit value that does not fit is refused; the default (10,000) is
/// lowered to fit, with a note on stderr, so that `x700 serve` starts on a
/// machine with a low limit. Returns the limit and the connections allowed.
pub(super) fn open_files_limit(connections_max: usize) -> Result<(u64, usize), ConfigError> {
    let limit = crate::sys::raise_open_files_limit();
    let needed = connections_max as u64 + DESCRIPTORS_RESERVED;
    if limit >= needed {
        return Ok((limit, connections_max));
    }
    let fits = usize::try_from(limit.saturating_sub(DESCRIPTORS_RESERVED)).unwrap_or(0);
    if connections_max == config::Limits::default().connections_max && fits >= 64 {
        eprintln!(
            "x700: the open-file limit is {limit}: connections_max lowered from its default \
             {connections_max} to {fits}"
        );
        return Ok((limit, fits));
    }
    Err(ConfigError::Invalid(format!(
        "connections_max = {connections_max} needs {needed} open files \
         ({DESCRIPTORS_RESERVED} kept for the node's own), but the open-file limit is \
         {limit} (ulimit -Hn): lower connections_max or raise the hard limit"
    )))
}

/// A member of a cluster of several claims its data directory for its node
/// and cluster id (the first start writes them, later starts must match); a
/// node started alone refuses a member's directory, which would otherwise
/// try to lead that cluster's membership by itself.
pub(super) fn claim_member_ids(config: &Config, clustered: bool) -> Result<(), StartError> {
    use crate::store::member_file::{self, MemberIds};
    let invalid = |error: member_file::MemberFileError| ConfigError::Invalid(error.to_string());
    if clustered {
        let ids = MemberIds {
            node_id: u64::from(config.node_id),
            cluster_id: config.cluster_id,
        };
        member_file::claim(&config.data, ids).map_err(invalid)?;
    } else if let Some(stored) = member_file::read(&config.data).map_err(invalid)? {
        return Err(ConfigError::Invalid(format!(
            "{} belongs to node {} of cluster {}: start it with --raft and that --node-id",
            config.data.display(),
            stored.node_id,
            stored.cluster_id
        ))
        .into());
    }
    Ok(())
}

/// Checks the cold files' pages left after the start, in one background
/// thread at the lowest CPU priority; a damaged page stops the node
/// (`table::page_check::refuse`), as it would have stopped the start.
pub(super) fn spawn_page_checks(checks: Vec<crate::store::BackgroundCheck>) {
    if checks.is_empty() {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("x700-page-check".into())
        .spawn(move || {
            crate::sys::lower_thread_priority();
            for (check, file) in &checks {
                if let Err(error) = check.check_all(file) {
                    crate::table::page_check::refuse(&error);
                }
            }
        });
    if let Err(error) = spawned {
        // Without the thread every page is still checked on first touch.
        eprintln!("x700: page check thread: {error}; cold pages are checked on first use only");
    }
}
