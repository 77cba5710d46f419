//! Server-side capture (`x700 serve --capture FILE.pcapng`): the traffic of
//! the client listeners, both directions, written as pcapng for sites
//! where tcpdump is not allowed. Format and rotation: `pcapng.rs`,
//! `writer.rs`; operations: docs/OPERATIONS.md, "Capturing traffic on the
//! node".
//!
//! The event loops never wait on it. Each read and each write of a client
//! connection, and each datagram in or out, is copied into an event on a
//! bounded channel; a writer thread of its own turns them into made-up
//! packets and writes the files. When the channel is full the chunk is
//! dropped and counted (`x700_capture_dropped_total`). When the capture is
//! off, each hook in the loops costs one relaxed load of [`Capture::on`].

use crossbeam_channel::{Receiver, Sender, TrySendError};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

mod pcapng;
mod writer;

/// The name of rotated file `index` (0: the file in hand).
pub use writer::numbered as rotated_path;

/// Events queued for the writer: with 64 KiB reads at most, the queue holds
/// at most 64 MiB.
pub const QUEUE_EVENTS_MAX: usize = 1024;
/// Smallest `capture_max_bytes` accepted: room for the headers and several
/// of the largest packets.
pub const FILE_BYTES_MIN: u64 = 256 * 1024;
/// Default size at which a capture file is rotated.
pub const FILE_BYTES_DEFAULT: u64 = 256 << 20;
/// Default files kept (the one in hand and the older ones).
pub const FILES_DEFAULT: usize = 8;
/// Most files kept.
pub const FILES_MAX: usize = 1000;
/// Longest wait for the writer to close its file on a stop.
const STOP_WAIT: Duration = Duration::from_secs(5);

/// Where and how much to capture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// The file in hand; older ones are numbered beside it.
    pub path: PathBuf,
    /// A file is rotated before it passes this size.
    pub max_bytes: u64,
    /// Files kept, the one in hand included (at least 1).
    pub files: usize,
}

/// Which way a chunk went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Read by the node.
    FromClient,
    /// Written by the node.
    ToClient,
}

/// Names one TCP connection for the writer: the loop, its slot, and the
/// slot's generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnectionKey {
    /// The event loop.
    pub worker: u32,
    /// The connection's slot in the loop.
    pub token: u32,
    /// The slot's generation (a later connection in the slot differs).
    pub generation: u32,
}

/// What the loops hand to the writer.
enum Event {
    /// Open (or reopen) the file: the capture is switched on.
    Start,
    /// Close the file; the sender hears when it is done.
    Stop(Sender<()>),
    /// End the thread.
    Shutdown,
    /// A connection was accepted (a SYN handshake is written).
    Open {
        key: ConnectionKey,
        at_ns: u64,
        client: SocketAddr,
        node: SocketAddr,
    },
    /// Bytes read or written on a connection, `offset` bytes into their
    /// direction's stream.
    Tcp {
        key: ConnectionKey,
        at_ns: u64,
        client: SocketAddr,
        node: SocketAddr,
        direction: Direction,
        offset: u64,
        bytes: Vec<u8>,
    },
    /// A connection closed (FINs are written).
    Close { key: ConnectionKey, at_ns: u64 },
    /// A datagram received or sent.
    Udp {
        at_ns: u64,
        client: SocketAddr,
        node: SocketAddr,
        direction: Direction,
        bytes: Vec<u8>,
    },
}

/// Counters of the capture, shared with the writer.
#[derive(Debug, Default)]
pub struct CaptureStats {
    /// Chunks dropped because the writer's queue was full.
    pub dropped: AtomicU64,
    /// Packets written.
    pub packets: AtomicU64,
    /// Files rotated.
    pub rotations: AtomicU64,
    /// Failed writes or file creations.
    pub write_errors: AtomicU64,
}

/// Why the capture could not be switched.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SwitchError {
    /// The node was started without `--capture FILE`.
    #[error("no capture file configured (start the node with --capture FILE)")]
    NotConfigured,
    /// The writer thread is gone.
    #[error("the capture writer has stopped")]
    WriterGone,
}

/// The node's capture: off, or on and writing.
pub struct Capture {
    /// Read by every hook: the only cost when off.
    on: AtomicBool,
    sender: Option<Sender<Event>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Serialises start and stop (the admin endpoint may be asked twice
    /// at once).
    switching: Mutex<()>,
    /// The counters.
    pub stats: Arc<CaptureStats>,
}

impl std::fmt::Debug for Capture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capture")
            .field("on", &self.on())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Capture {
    /// A capture that cannot be switched on (no file configured).
    pub fn unconfigured() -> Capture {
        Capture {
            on: AtomicBool::new(false),
            sender: None,
            writer: Mutex::new(None),
            switching: Mutex::new(()),
            stats: Arc::new(CaptureStats::default()),
        }
    }

    /// Starts the writer thread for `settings`; the capture is on at once
    /// if `on_at_start`.
    pub fn start(settings: Settings, on_at_start: bool) -> std::io::Result<Capture> {
        assert!(settings.files >= 1 && settings.max_bytes >= FILE_BYTES_MIN);
        let (sender, receiver): (Sender<Event>, Receiver<Event>) =
            crossbeam_channel::bounded(QUEUE_EVENTS_MAX);
        let stats = Arc::new(CaptureStats::default());
        let writer = {
            let stats = Arc::clone(&stats);
            std::thread::Builder::new()
                .name("x700-capture".into())
                .spawn(move || writer::run(&settings, &receiver, &stats))?
        };
        let capture = Capture {
            on: AtomicBool::new(false),
            sender: Some(sender),
            writer: Mutex::new(Some(writer)),
            switching: Mutex::new(()),
            stats,
        };
        if on_at_start {
            // The writer was just made: it cannot be gone.
            let _ = capture.switch_on();
        }
        Ok(capture)
    }

    /// True while capturing: the hooks' one test.
    #[inline]
    pub fn on(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    /// Switches the capture on (a no-op if it is on): a new file is begun,
    /// the last one shifted to `FILE.1.pcapng`.
    pub fn switch_on(&self) -> Result<(), SwitchError> {
        let _switching = self.switching.lock().unwrap_or_else(|e| e.into_inner());
        let sender = self.sender.as_ref().ok_or(SwitchError::NotConfigured)?;
        if self.on() {
            return Ok(());
        }
        sender
            .send_timeout(Event::Start, STOP_WAIT)
            .map_err(|_| SwitchError::WriterGone)?;
        self.on.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Switches the capture off and returns once its file is written and
    /// closed (a no-op if it is off).
    pub fn switch_off(&self) -> Result<(), SwitchError> {
        let _switching = self.switching.lock().unwrap_or_else(|e| e.into_inner());
        let sender = self.sender.as_ref().ok_or(SwitchError::NotConfigured)?;
        if !self.on() {
            return Ok(());
        }
        self.on.store(false, Ordering::SeqCst);
        let (done, closed) = crossbeam_channel::bounded(1);
        sender
            .send_timeout(Event::Stop(done), STOP_WAIT)
            .map_err(|_| SwitchError::WriterGone)?;
        closed
            .recv_timeout(STOP_WAIT)
            .map_err(|_| SwitchError::WriterGone)
    }

    /// Ends the writer thread after it has written everything queued.
    pub fn finish(&self) {
        self.on.store(false, Ordering::SeqCst);
        if let Some(sender) = self.sender.as_ref() {
            let _ = sender.send_timeout(Event::Shutdown, STOP_WAIT);
        }
        let writer = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(writer) = writer {
            let _ = writer.join();
        }
    }

    /// A connection was accepted.
    pub fn open(&self, key: ConnectionKey, client: SocketAddr, node: SocketAddr) {
        self.queue(Event::Open {
            key,
            at_ns: now_ns(),
            client,
            node,
        });
    }

    /// A connection between `(client, node)` read or wrote `bytes`, which
    /// begin `offset` bytes into that direction's stream (counted by the
    /// loop, so that a chunk dropped here leaves a visible hole).
    pub fn tcp(
        &self,
        key: ConnectionKey,
        (client, node): (SocketAddr, SocketAddr),
        direction: Direction,
        offset: u64,
        bytes: &[u8],
    ) {
        if bytes.is_empty() {
            return;
        }
        self.queue(Event::Tcp {
            key,
            at_ns: now_ns(),
            client,
            node,
            direction,
            offset,
            bytes: bytes.to_vec(),
        });
    }

    /// A connection closed.
    pub fn close(&self, key: ConnectionKey) {
        self.queue(Event::Close {
            key,
            at_ns: now_ns(),
        });
    }

    /// A datagram came in or went out.
    pub fn udp(&self, client: SocketAddr, node: SocketAddr, direction: Direction, bytes: &[u8]) {
        self.queue(Event::Udp {
            at_ns: now_ns(),
            client,
            node,
            direction,
            bytes: bytes.to_vec(),
        });
    }

    fn queue(&self, event: Event) {
        let Some(sender) = self.sender.as_ref() else {
            return;
        };
        match sender.try_send(event) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Fails unless the directory that will hold the capture files exists:
/// a typo in `--capture` is an error at start, not a lost capture.
pub fn check_directory(path: &std::path::Path) -> std::io::Result<()> {
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => std::path::Path::new("."),
    };
    if std::fs::metadata(directory)?.is_dir() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "{} is not a directory",
            directory.display()
        )))
    }
}

/// Nanoseconds since the epoch (0 if the clock is before it).
fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The capture's metrics on `/metrics`.
pub struct CaptureMetrics(pub Arc<Capture>);

impl std::fmt::Debug for CaptureMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CaptureMetrics")
    }
}

impl Collector for CaptureMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = &self.0.stats;
        encoder
            .encode_descriptor(
                "x700_capture_on",
                "1 while the node captures its client traffic (--capture).",
                None,
                MetricType::Gauge,
            )?
            .encode_gauge(&i64::from(self.0.on()))?;
        let counters = [
            (
                "x700_capture_dropped",
                "Chunks of client traffic left out of the capture: its writer's queue was full.",
                &stats.dropped,
            ),
            (
                "x700_capture_packets",
                "Packets written to the capture files.",
                &stats.packets,
            ),
            (
                "x700_capture_rotations",
                "Capture files rotated for size.",
                &stats.rotations,
            ),
            (
                "x700_capture_write_errors",
                "Failed writes or creations of capture files.",
                &stats.write_errors,
            ),
        ];
        for (name, help, counter) in counters {
            let value = counter.load(Ordering::Relaxed);
            encoder
                .encode_descriptor(name, help, None, MetricType::Counter)?
                .encode_counter::<NoLabelSet, _, u64>(&value, None)?;
        }
        Ok(())
    }
}
