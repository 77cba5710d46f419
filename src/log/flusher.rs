//! Group commit: one thread makes appended records durable. Appends write
//! their bytes (a `pwrite`, no waiting) and hand the flusher a job; the
//! flusher takes every job that is waiting, optionally lingers up to
//! `group_commit_wait` for more, runs one `fdatasync` per file for all of
//! them and then calls each job's completion. Many writes share one sync.
//!
//! A failed `fdatasync` is never retried: the kernel may already have
//! dropped the dirty pages, so a retry that succeeds would prove nothing.
//! The log is marked failed and every later append is refused.

use super::LogHealth;
use crossbeam_channel::{Receiver, Sender};
use std::fs::File;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What to call once a job's bytes are durable (or could not be made so).
pub type Completion = Box<dyn FnOnce(io::Result<()>) + Send>;

/// Files to sync and whom to tell.
pub struct SyncJob {
    /// The segment files the append wrote to.
    pub files: Vec<Arc<File>>,
    /// Called after the sync.
    pub done: Completion,
}

/// Jobs taken into one sync at most (bounds the work between two syncs).
const JOBS_PER_SYNC_MAX: usize = 4096;

/// The flusher thread's handle.
pub struct Flusher {
    jobs: Option<Sender<SyncJob>>,
    thread: Option<JoinHandle<()>>,
}

impl Flusher {
    /// Starts the thread.
    pub fn start(health: Arc<LogHealth>, group_commit_wait: Duration) -> io::Result<Flusher> {
        let (jobs, inbox) = crossbeam_channel::unbounded();
        let thread = std::thread::Builder::new()
            .name("x700-log-sync".into())
            .spawn(move || run(&inbox, &health, group_commit_wait))?;
        Ok(Flusher {
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }

    /// Queues a job. If the thread is gone the job fails at once.
    pub fn submit(&self, job: SyncJob) {
        let Some(jobs) = self.jobs.as_ref() else {
            (job.done)(Err(io::Error::other("log sync thread stopped")));
            return;
        };
        if let Err(error) = jobs.send(job) {
            (error.0.done)(Err(io::Error::other("log sync thread stopped")));
        }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(inbox: &Receiver<SyncJob>, health: &LogHealth, group_commit_wait: Duration) {
    let mut batch: Vec<SyncJob> = Vec::new();
    while let Ok(first) = inbox.recv() {
        batch.push(first);
        if !group_commit_wait.is_zero() {
            let deadline = Instant::now() + group_commit_wait;
            while batch.len() < JOBS_PER_SYNC_MAX {
                match inbox.recv_deadline(deadline) {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
        }
        while batch.len() < JOBS_PER_SYNC_MAX {
            match inbox.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let result = sync_all(&batch, health);
        for job in batch.drain(..) {
            let outcome = match &result {
                Ok(()) => Ok(()),
                Err(error) => Err(io::Error::new(error.kind(), error.to_string())),
            };
            (job.done)(outcome);
        }
    }
}

fn sync_all(batch: &[SyncJob], health: &LogHealth) -> io::Result<()> {
    if health.failed.load(Ordering::SeqCst) {
        return Err(io::Error::other(
            "an earlier fdatasync of the log failed; writes are stopped on this node",
        ));
    }
    let mut files: Vec<&Arc<File>> = batch.iter().flat_map(|job| job.files.iter()).collect();
    files.sort_by_key(|file| Arc::as_ptr(file));
    files.dedup_by_key(|file| Arc::as_ptr(file));
    let started = Instant::now();
    for file in files {
        if let Err(error) = file.sync_data() {
            health.failed.store(true, Ordering::SeqCst);
            eprintln!("x700: log fdatasync failed ({error}); this node stops taking writes");
            return Err(error);
        }
    }
    health.record_sync(started.elapsed(), batch.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(file: &Arc<File>) -> (SyncJob, crossbeam_channel::Receiver<io::Result<()>>) {
        let (tx, rx) = crossbeam_channel::bounded(1);
        (
            SyncJob {
                files: vec![Arc::clone(file)],
                done: Box::new(move |result| {
                    let _ = tx.send(result);
                }),
            },
            rx,
        )
    }

    #[test]
    fn a_failed_sync_stops_the_log_for_good() {
        // fdatasync on a character device fails (EINVAL): a real failing
        // sync, with no injection.
        let health = Arc::new(LogHealth::default());
        let flusher = Flusher::start(Arc::clone(&health), Duration::ZERO).unwrap();
        let broken = Arc::new(File::options().write(true).open("/dev/full").unwrap());
        let (first, first_done) = job(&broken);
        flusher.submit(first);
        assert!(first_done.recv().unwrap().is_err());
        assert!(health.failed.load(Ordering::SeqCst));
        // A file that syncs fine is refused too: the earlier failure may
        // have dropped data, so nothing after it counts as durable.
        let dir = tempfile::tempdir().unwrap();
        let good = Arc::new(File::create(dir.path().join("f")).unwrap());
        let (second, second_done) = job(&good);
        flusher.submit(second);
        assert!(second_done.recv().unwrap().is_err());
    }

    #[test]
    fn jobs_complete_after_their_sync() {
        let health = Arc::new(LogHealth::default());
        let flusher = Flusher::start(Arc::clone(&health), Duration::from_micros(200)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = Arc::new(File::create(dir.path().join("f")).unwrap());
        let receivers: Vec<_> = (0..50)
            .map(|_| {
                let (j, rx) = job(&file);
                flusher.submit(j);
                rx
            })
            .collect();
        for rx in receivers {
            assert!(rx.recv().unwrap().is_ok());
        }
        let syncs = health.syncs.load(Ordering::SeqCst);
        assert!((1..=50).contains(&syncs));
        assert_eq!(health.synced_appends.load(Ordering::SeqCst), 50);
    }
}
