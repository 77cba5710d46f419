//! The capture's writer thread: turns the event loops' chunks into packets,
//! keeps each connection's sequence numbers, and writes the files, rotating
//! by size.
//!
//! Rotation: once the file in hand would pass `max_bytes`, it is closed and
//! renamed `FILE.1.pcapng` (the older ones shift to `.2`, `.3` ..., the
//! oldest beyond `files` is removed), and a new `FILE.pcapng` begins with
//! its own headers. A connection that spans two files continues in the new
//! one without a SYN, as a capture started mid-stream would.

use super::pcapng::{self, flags, Transport, PAYLOAD_BYTES_MAX};
use super::{CaptureStats, ConnectionKey, Direction, Event, Settings};
use crossbeam_channel::{Receiver, RecvTimeoutError};
use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// The writer flushes what it holds when no event came for this long, so
/// a file on disk is at most this far behind the traffic.
const FLUSH_IDLE: Duration = Duration::from_millis(200);
/// Bytes gathered before a `write`.
const WRITE_BUFFER_BYTES: usize = 256 * 1024;
/// Connections whose sequence numbers the writer tracks; past it the
/// oldest entries are forgotten (their next chunk starts a new stream).
const STREAMS_MAX: usize = 100_000;
/// The sequence number a connection's client side starts at (arbitrary).
const CLIENT_ISN: u32 = 1_000;
/// The sequence number a connection's node side starts at (arbitrary).
const NODE_ISN: u32 = 5_000_000;

/// One TCP connection as the capture shows it.
struct Stream {
    client: SocketAddr,
    node: SocketAddr,
    /// Next sequence number from the client.
    client_seq: u32,
    /// Next sequence number from the node.
    node_seq: u32,
}

/// The file in hand and what it has written.
struct Output {
    path: PathBuf,
    file: File,
    buffer: Vec<u8>,
    /// Bytes written to the file plus those in `buffer`.
    bytes: u64,
}

/// Runs until a `Shutdown` event or until every sender is gone.
pub(super) fn run(settings: &Settings, events: &Receiver<Event>, stats: &Arc<CaptureStats>) {
    let mut streams: HashMap<ConnectionKey, Stream> = HashMap::new();
    let mut output: Option<Output> = None;
    loop {
        let event = match events.recv_timeout(FLUSH_IDLE) {
            Ok(event) => event,
            Err(RecvTimeoutError::Timeout) => {
                if let Some(out) = output.as_mut() {
                    flush(out, stats);
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        match event {
            Event::Start => {
                if output.is_none() {
                    streams.clear();
                    output = open(settings, stats);
                }
            }
            Event::Stop(done) => {
                if let Some(mut out) = output.take() {
                    flush(&mut out, stats);
                    let _ = out.file.sync_data();
                }
                let _ = done.send(());
            }
            Event::Shutdown => break,
            Event::Open {
                key,
                at_ns,
                client,
                node,
            } => {
                let Some(out) = output.as_mut() else { continue };
                if streams.len() >= STREAMS_MAX {
                    streams.clear();
                }
                let stream = Stream {
                    client,
                    node,
                    client_seq: CLIENT_ISN,
                    node_seq: NODE_ISN,
                };
                let handshake = [
                    (true, CLIENT_ISN, 0, flags::SYN),
                    (false, NODE_ISN, CLIENT_ISN + 1, flags::SYN | flags::ACK),
                    (true, CLIENT_ISN + 1, NODE_ISN + 1, flags::ACK),
                ];
                for (from_client, seq, ack, bits) in handshake {
                    let segment = Segment {
                        from_client,
                        seq,
                        ack,
                        flags: bits,
                    };
                    write_packet(
                        out,
                        settings,
                        stats,
                        &Packet::tcp(&stream, at_ns, segment, &[]),
                    );
                }
                streams.insert(
                    key,
                    Stream {
                        client_seq: CLIENT_ISN + 1,
                        node_seq: NODE_ISN + 1,
                        ..stream
                    },
                );
            }
            Event::Tcp {
                key,
                at_ns,
                client,
                node,
                direction,
                offset,
                bytes,
            } => {
                let Some(out) = output.as_mut() else { continue };
                if streams.len() >= STREAMS_MAX && !streams.contains_key(&key) {
                    streams.clear();
                }
                let stream = streams.entry(key).or_insert(Stream {
                    client,
                    node,
                    client_seq: CLIENT_ISN,
                    node_seq: NODE_ISN,
                });
                let from_client = direction == Direction::FromClient;
                // The chunk's place in its stream, from the loop's count:
                // after a dropped chunk the sequence numbers jump, and a
                // reader sees the hole. Sequence numbers wrap at 2^32 as
                // TCP's do (the cast keeps the low 32 bits).
                #[allow(clippy::cast_possible_truncation)]
                let position = offset as u32;
                if from_client {
                    stream.client_seq = CLIENT_ISN.wrapping_add(1).wrapping_add(position);
                } else {
                    stream.node_seq = NODE_ISN.wrapping_add(1).wrapping_add(position);
                }
                for piece in bytes.chunks(PAYLOAD_BYTES_MAX) {
                    let (seq, ack) = if from_client {
                        (stream.client_seq, stream.node_seq)
                    } else {
                        (stream.node_seq, stream.client_seq)
                    };
                    let segment = Segment {
                        from_client,
                        seq,
                        ack,
                        flags: flags::ACK | flags::PSH,
                    };
                    write_packet(
                        out,
                        settings,
                        stats,
                        &Packet::tcp(stream, at_ns, segment, piece),
                    );
                    // At most PAYLOAD_BYTES_MAX: fits 32 bits.
                    let advance = u32::try_from(piece.len()).unwrap_or(0);
                    if from_client {
                        stream.client_seq = stream.client_seq.wrapping_add(advance);
                    } else {
                        stream.node_seq = stream.node_seq.wrapping_add(advance);
                    }
                }
            }
            Event::Close { key, at_ns } => {
                let Some(out) = output.as_mut() else { continue };
                let Some(stream) = streams.remove(&key) else {
                    continue;
                };
                // The node's FIN, then the client's; each acknowledges
                // everything the other side sent.
                let closing = [
                    (false, stream.node_seq, stream.client_seq),
                    (true, stream.client_seq, stream.node_seq.wrapping_add(1)),
                ];
                for (from_client, seq, ack) in closing {
                    let segment = Segment {
                        from_client,
                        seq,
                        ack,
                        flags: flags::FIN | flags::ACK,
                    };
                    write_packet(
                        out,
                        settings,
                        stats,
                        &Packet::tcp(&stream, at_ns, segment, &[]),
                    );
                }
            }
            Event::Udp {
                at_ns,
                client,
                node,
                direction,
                bytes,
            } => {
                let Some(out) = output.as_mut() else { continue };
                let from_client = direction == Direction::FromClient;
                let (source, destination) = if from_client {
                    (client, node)
                } else {
                    (node, client)
                };
                // A datagram is at most 65,507 bytes; a longer one than
                // PAYLOAD_BYTES_MAX is cut (it never happens: answers are
                // at most 1024 x 44 bytes).
                let piece = &bytes[..bytes.len().min(PAYLOAD_BYTES_MAX)];
                let packet = Packet {
                    at_ns,
                    source,
                    destination,
                    from_client,
                    transport: Transport::Udp,
                    payload: piece,
                };
                write_packet(out, settings, stats, &packet);
            }
        }
    }
    if let Some(mut out) = output.take() {
        flush(&mut out, stats);
        let _ = out.file.sync_data();
    }
}

/// Source and destination of a packet of `stream`.
fn ends(stream: &Stream, from_client: bool) -> (SocketAddr, SocketAddr) {
    if from_client {
        (stream.client, stream.node)
    } else {
        (stream.node, stream.client)
    }
}

/// One synthetic packet: who sent what, when.
struct Packet<'a> {
    at_ns: u64,
    source: SocketAddr,
    destination: SocketAddr,
    from_client: bool,
    transport: Transport,
    payload: &'a [u8],
}

/// The TCP header fields of one packet of a stream.
struct Segment {
    from_client: bool,
    seq: u32,
    ack: u32,
    flags: u8,
}

impl<'a> Packet<'a> {
    /// A TCP packet of `stream`, its ends taken from the direction.
    fn tcp(stream: &Stream, at_ns: u64, segment: Segment, payload: &'a [u8]) -> Packet<'a> {
        let (source, destination) = ends(stream, segment.from_client);
        Packet {
            at_ns,
            source,
            destination,
            from_client: segment.from_client,
            transport: Transport::Tcp {
                seq: segment.seq,
                ack: segment.ack,
                flags: segment.flags,
            },
            payload,
        }
    }
}

/// Appends one packet block, rotating first if the file would pass its
/// size.
fn write_packet(out: &mut Output, settings: &Settings, stats: &CaptureStats, packet: &Packet) {
    let before = out.buffer.len();
    pcapng::packet_block(
        &mut out.buffer,
        packet.at_ns,
        packet.source,
        packet.destination,
        packet.from_client,
        packet.transport,
        packet.payload,
    );
    let block = (out.buffer.len() - before) as u64;
    if out.bytes + block > settings.max_bytes {
        // The block goes to the next file: take it out, rotate, put it back.
        let tail = out.buffer.split_off(before);
        flush(out, stats);
        if let Some(next) = rotate(out, settings, stats) {
            *out = next;
        }
        out.buffer.extend_from_slice(&tail);
    }
    out.bytes += block;
    stats.packets.fetch_add(1, Ordering::Relaxed);
    if out.buffer.len() >= WRITE_BUFFER_BYTES {
        flush(out, stats);
    }
}

/// Writes what the buffer holds; a failing disk counts the bytes lost.
fn flush(out: &mut Output, stats: &CaptureStats) {
    if out.buffer.is_empty() {
        return;
    }
    if let Err(error) = out.file.write_all(&out.buffer) {
        stats.write_errors.fetch_add(1, Ordering::Relaxed);
        eprintln!("x700: capture: writing {}: {error}", out.path.display());
    }
    out.buffer.clear();
}

/// `FILE.pcapng` numbered `index`: `FILE.3.pcapng` (0 is the file itself).
pub fn numbered(path: &Path, index: usize) -> PathBuf {
    if index == 0 {
        return path.to_path_buf();
    }
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
    let name = match (stem, path.extension()) {
        (Some(stem), Some(extension)) => {
            format!("{stem}.{index}.{}", extension.to_string_lossy())
        }
        _ => format!(
            "{}.{index}",
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        ),
    };
    path.with_file_name(name)
}

/// Shifts the older files up by one (dropping those past `files`), then
/// opens a new file in hand.
fn rotate(out: &mut Output, settings: &Settings, stats: &CaptureStats) -> Option<Output> {
    let _ = out.file.sync_data();
    let path = &settings.path;
    let _ = std::fs::remove_file(numbered(path, settings.files - 1));
    for index in (0..settings.files - 1).rev() {
        let _ = std::fs::rename(numbered(path, index), numbered(path, index + 1));
    }
    stats.rotations.fetch_add(1, Ordering::Relaxed);
    open(settings, stats)
}

/// Creates the file in hand (shifting an existing one aside first, so a
/// capture restarted at run time never overwrites the last one).
fn open(settings: &Settings, stats: &CaptureStats) -> Option<Output> {
    let path = &settings.path;
    if path.exists() {
        let _ = std::fs::remove_file(numbered(path, settings.files - 1));
        for index in (0..settings.files - 1).rev() {
            let _ = std::fs::rename(numbered(path, index), numbered(path, index + 1));
        }
    }
    // The capture holds real numbers and HELLO tokens: private to the
    // node's user, like the data directory's files.
    let file = match std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
    {
        Ok(file) => file,
        Err(error) => {
            stats.write_errors.fetch_add(1, Ordering::Relaxed);
            eprintln!("x700: capture: creating {}: {error}", path.display());
            return None;
        }
    };
    let mut buffer = Vec::with_capacity(WRITE_BUFFER_BYTES + pcapng::PACKET_BLOCK_BYTES_MAX);
    pcapng::file_header(&mut buffer);
    assert_eq!(buffer.len(), pcapng::FILE_HEADER_BYTES);
    let bytes = buffer.len() as u64;
    Some(Output {
        path: path.clone(),
        file,
        buffer,
        bytes,
    })
}

#[cfg(test)]
mod tests {
    //! Proves the rotated files' names, and that a chunk the loops dropped
    //! leaves a hole in the sequence numbers instead of a stream that looks
    //! whole.
    use super::super::{CaptureStats, ConnectionKey, Direction, Event, Settings};
    use super::{numbered, run, CLIENT_ISN};
    use std::path::{Path, PathBuf};
    use std::sync::Arc;

    /// The TCP sequence numbers and payload lengths of a file the writer
    /// wrote (Ethernet + IPv4 + TCP only).
    fn tcp_segments(path: &Path) -> Vec<(u32, usize)> {
        let bytes = std::fs::read(path).unwrap();
        let mut at = 0;
        let mut segments = Vec::new();
        while at < bytes.len() {
            let kind = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
            let length = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
            if kind == 6 {
                let captured =
                    u32::from_le_bytes(bytes[at + 20..at + 24].try_into().unwrap()) as usize;
                let packet = &bytes[at + 28..at + 28 + captured];
                let tcp = &packet[34..];
                let seq = u32::from_be_bytes(tcp[4..8].try_into().unwrap());
                segments.push((seq, tcp.len() - 20));
            }
            at += length;
        }
        segments
    }

    /// Guards the capture that hid its losses: with sequence numbers kept
    /// by the writer, a dropped chunk made the next one follow on as if
    /// nothing were missing, and a reassembled stream was silently wrong.
    #[test]
    fn a_dropped_chunk_leaves_a_hole() {
        let dir = tempfile::tempdir().unwrap();
        let settings = Settings {
            path: dir.path().join("hole.pcapng"),
            max_bytes: super::super::FILE_BYTES_MIN,
            files: 2,
        };
        let (sender, receiver) = crossbeam_channel::unbounded();
        let key = ConnectionKey {
            worker: 0,
            token: 3,
            generation: 1,
        };
        let client = "127.0.0.1:40000".parse().unwrap();
        let node = "127.0.0.1:7700".parse().unwrap();
        let chunk = |offset: u64, length: usize| Event::Tcp {
            key,
            at_ns: 0,
            client,
            node,
            direction: Direction::FromClient,
            offset,
            bytes: vec![7; length],
        };
        sender.send(Event::Start).unwrap();
        sender
            .send(Event::Open {
                key,
                at_ns: 0,
                client,
                node,
            })
            .unwrap();
        sender.send(chunk(0, 10)).unwrap();
        // The chunk at 10..30 was dropped by the loop.
        sender.send(chunk(30, 5)).unwrap();
        sender.send(Event::Shutdown).unwrap();
        run(&settings, &receiver, &Arc::new(CaptureStats::default()));
        let data: Vec<(u32, usize)> = tcp_segments(&settings.path)
            .into_iter()
            .filter(|&(_, length)| length > 0)
            .collect();
        assert_eq!(
            data,
            [(CLIENT_ISN + 1, 10), (CLIENT_ISN + 1 + 30, 5)],
            "the second chunk starts 20 bytes after the first one ends"
        );
    }

    #[test]
    fn numbered_names() {
        let path = Path::new("/tmp/cap.pcapng");
        assert_eq!(numbered(path, 0), PathBuf::from("/tmp/cap.pcapng"));
        assert_eq!(numbered(path, 2), PathBuf::from("/tmp/cap.2.pcapng"));
        assert_eq!(numbered(Path::new("cap"), 1), PathBuf::from("cap.1"));
    }
}
