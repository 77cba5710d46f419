//! Receiving a snapshot from the leader (INSTALL_SNAPSHOT, PROTOCOL.md P6).
//! The peer server takes the chunks itself rather than through openraft's
//! `Raft::install_snapshot`, so that nothing reaches openraft unchecked (a
//! state machine error is fatal to its core):
//!
//! 1. chunks are appended to `DIR/snapshot-incoming.image`, each at the
//!    offset where the previous ended (a chunk at offset 0 starts over);
//! 2. after the last, the image is staged in its own directory, every file
//!    checked against its CRC32C and every page against its checksum,
//!    stamped as this directory's own (`snapshot::adopt`), and the manifest
//!    written beside it, then the swap journal (openraft purges the log up
//!    to the snapshot while the state machine installs it, so from then on
//!    a restart must finish the swap); an image that fails any check is
//!    refused (ERROR code 4, logged) and the leader sends it again later;
//! 3. only then `Raft::install_full_snapshot` hands it to the state
//!    machine, which swaps the shards in (`StateMachine::install_snapshot`);
//!    if openraft did not install it after all (a newer leader meanwhile),
//!    the journal is withdrawn. One no newer than what the node applied is
//!    not even staged.
//!
//! Meanwhile the leader's replication stream to this node is busy with the
//! snapshot and sends no heartbeats: each chunk, and a tick every
//! `LEASE_TICK` while the image is checked and swapped in, stands in for
//! one (an empty APPEND_ENTRIES under the leader's vote), so this node does
//! not start an election and depose a healthy leader.

use super::codec::{ErrorAnswer, ErrorCode, Message};
use crate::replication::state_machine::{staging_dir, write_manifest, INCOMING_IMAGE_NAME};
use crate::replication::types::TypeConfig;
use crate::table::snapshot;
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest};
use openraft::storage::{Snapshot, SnapshotMeta};
use openraft::{BasicNode, Raft, Vote};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// How often the leader's lease is renewed while an image is checked and
/// swapped in (a third of the shortest election timeout).
const LEASE_TICK: Duration = Duration::from_millis(50);

/// Most bytes one file of an incoming image may hold (a table file of the
/// largest shard).
const IMAGE_FILE_BYTES_MAX: u64 = 1 << 40;

/// The image being received.
pub struct Incoming {
    snapshot_id: String,
    file: tokio::fs::File,
    received: u64,
}

/// What receives snapshots on one node.
pub struct SnapshotReceiver {
    data_dir: PathBuf,
    incoming: tokio::sync::Mutex<Option<Incoming>>,
    /// One image staged and installed at a time.
    installing: tokio::sync::Mutex<()>,
}

fn error(message: impl ToString) -> Message {
    Message::Error(ErrorAnswer {
        code: ErrorCode::Unsupported,
        message: message.to_string(),
    })
}

impl SnapshotReceiver {
    /// Receives into `data_dir`.
    pub fn new(data_dir: &Path) -> SnapshotReceiver {
        SnapshotReceiver {
            data_dir: data_dir.to_path_buf(),
            incoming: tokio::sync::Mutex::new(None),
            installing: tokio::sync::Mutex::new(()),
        }
    }

    /// Takes one chunk; returns the answer and whether the connection
    /// stays open.
    pub async fn receive(
        &self,
        raft: &Raft<TypeConfig>,
        rpc: InstallSnapshotRequest<TypeConfig>,
    ) -> (Message, bool) {
        if let Some(higher) = renew_lease(raft, rpc.vote).await {
            // A leader of a past term: refused, as openraft would.
            return (answer(higher), true);
        }
        let mut incoming = self.incoming.lock().await;
        let path = self.data_dir.join(INCOMING_IMAGE_NAME);
        if rpc.offset == 0 {
            let file = crate::sys::open_or_create_private(
                std::fs::OpenOptions::new().write(true).truncate(true),
                &path,
            );
            match file {
                Ok(file) => {
                    *incoming = Some(Incoming {
                        snapshot_id: rpc.meta.snapshot_id.clone(),
                        file: tokio::fs::File::from_std(file),
                        received: 0,
                    })
                }
                Err(e) => return (error(format!("{}: {e}", path.display())), true),
            }
        }
        let Some(current) = incoming
            .as_mut()
            .filter(|i| i.snapshot_id == rpc.meta.snapshot_id && i.received == rpc.offset)
        else {
            return (
                error(format!(
                    "snapshot {} chunk at offset {} does not follow what was received",
                    rpc.meta.snapshot_id, rpc.offset
                )),
                true,
            );
        };
        if let Err(e) = current.file.write_all(&rpc.data).await {
            *incoming = None;
            return (error(format!("{}: {e}", path.display())), true);
        }
        current.received += rpc.data.len() as u64;
        if !rpc.done {
            return (answer(own_vote(raft)), true);
        }
        if let Err(e) = current.file.flush().await {
            *incoming = None;
            return (error(format!("{}: {e}", path.display())), true);
        }
        *incoming = None;
        drop(incoming);
        self.install(raft, rpc.vote, rpc.meta, path).await
    }

    /// Stages the whole image at `path`, checks it, and hands it to
    /// openraft, renewing the leader's lease meanwhile.
    async fn install(
        &self,
        raft: &Raft<TypeConfig>,
        vote: Vote<u64>,
        meta: SnapshotMeta<u64, BasicNode>,
        path: PathBuf,
    ) -> (Message, bool) {
        let _one_at_a_time = self.installing.lock().await;
        {
            // What openraft would not install anyway is not staged: a
            // journal for it would swap it in at the next start.
            let metrics = raft.metrics().borrow().clone();
            if meta.last_log_id <= metrics.last_applied.max(metrics.snapshot) {
                let _ = std::fs::remove_file(&path);
                return (answer(metrics.vote), true);
            }
        }
        let (stop_lease, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let lease_raft = raft.clone();
        let lease = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = &mut stopped => return,
                    _ = tokio::time::sleep(LEASE_TICK) => {
                        if renew_lease(&lease_raft, vote).await.is_some() {
                            return;
                        }
                    }
                }
            }
        });
        let data_dir = self.data_dir.clone();
        let staged_meta = meta.clone();
        let at = meta.last_log_id.map_or(0, |l| l.index);
        let staging = staging_dir(&self.data_dir, &meta);
        let started = std::time::Instant::now();
        let staged = tokio::task::spawn_blocking(move || stage(&path, &data_dir, &staged_meta))
            .await
            .map_err(|e| e.to_string())
            .and_then(|staged| staged);
        let outcome = match staged {
            Err(reason) => {
                eprintln!("x700: refused the leader's snapshot at log index {at}: {reason}");
                (error(format!("snapshot refused: {reason}")), true)
            }
            Ok(bytes) => {
                eprintln!(
                    "x700: received the leader's snapshot at log index {at} ({bytes} bytes, \
                     every page checked in {} ms); swapping it in",
                    started.elapsed().as_millis()
                );
                match tokio::fs::File::open("/dev/null").await {
                    Err(e) => (error(e), true),
                    Ok(none) => {
                        let snapshot = Snapshot {
                            meta,
                            snapshot: Box::new(none),
                        };
                        let installed = raft.install_full_snapshot(vote, snapshot).await;
                        // Not installed (another leader meanwhile, or no
                        // newer than what this node holds): the journal
                        // still names the staging directory; withdraw it.
                        let data_dir = self.data_dir.clone();
                        let _ = tokio::task::spawn_blocking(move || {
                            snapshot::cancel_swap(&data_dir, &staging)
                        })
                        .await;
                        match installed {
                            Ok(response) => (answer(response.vote), true),
                            Err(e) => (
                                Message::Error(ErrorAnswer {
                                    code: ErrorCode::Stopped,
                                    message: e.to_string(),
                                }),
                                false,
                            ),
                        }
                    }
                }
            }
        };
        let _ = stop_lease.send(());
        let _ = lease.await;
        outcome
    }
}

fn answer(vote: Vote<u64>) -> Message {
    Message::InstallSnapshotAnswer(openraft::raft::InstallSnapshotResponse { vote })
}

fn own_vote(raft: &Raft<TypeConfig>) -> Vote<u64> {
    raft.metrics().borrow().vote
}

/// Renews the lease of the leader holding `vote` with an empty
/// APPEND_ENTRIES (no previous entry, no entries, no commit index: it
/// changes nothing but the vote and its time). Returns this node's vote if
/// it is higher (the sender is no longer the leader).
async fn renew_lease(raft: &Raft<TypeConfig>, vote: Vote<u64>) -> Option<Vote<u64>> {
    let heartbeat = AppendEntriesRequest {
        vote,
        prev_log_id: None,
        entries: Vec::new(),
        leader_commit: None,
    };
    match raft.append_entries(heartbeat).await {
        Ok(AppendEntriesResponse::HigherVote(higher)) => Some(higher),
        _ => None,
    }
}

/// Stages the image at `incoming` for `meta` in `data_dir`: checked,
/// adopted, its manifest beside it. Returns the image's bytes.
fn stage(
    incoming: &Path,
    data_dir: &Path,
    meta: &SnapshotMeta<u64, BasicNode>,
) -> Result<u64, String> {
    let staging = staging_dir(data_dir, meta);
    let staged = (|| {
        let file =
            std::fs::File::open(incoming).map_err(|e| format!("{}: {e}", incoming.display()))?;
        let mut input = std::io::BufReader::with_capacity(1 << 20, file);
        let bytes = snapshot::read_image(&mut input, &staging, IMAGE_FILE_BYTES_MAX)
            .map_err(|e| e.to_string())?;
        snapshot::adopt(&staging, data_dir).map_err(|e| e.to_string())?;
        write_manifest(&staging, meta).map_err(|e| format!("{}: {e}", staging.display()))?;
        // Journaled before openraft sees it: openraft purges the log up to
        // the snapshot while the state machine installs it, so a crash from
        // there on must find the swap to finish (`Store::open`).
        snapshot::begin_swap(data_dir, &staging).map_err(|e| e.to_string())?;
        Ok(bytes)
    })();
    let _ = std::fs::remove_file(incoming);
    if staged.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    staged
}
