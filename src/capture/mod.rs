//! Reading x700 traffic back from packet captures (tcpdump, tshark, or the
//! node's own `capture` files): the frames each connection carried, each
//! request paired with its answer. `x700 decode` prints them; `x700
//! replay` sends the requests again.
//!
//! The pipeline, stage by stage, each a plain function over data:
//! 1. `file`: the packets of a pcap or pcapng file (number, time, link
//!    type, bytes). A truncated or malformed file stops here with an error
//!    naming the packet; everything before it goes on through the stages.
//! 2. `link`: each packet's addresses and its TCP segment or UDP payload.
//!    Other link types and protocols are skipped and counted.
//! 3. `reassembly`: each direction of each TCP connection as the byte
//!    stream its receiver read, holes marked.
//! 4. `frames`: each stream (and each UDP datagram) cut into x700 frames,
//!    boundaries found again after a hole or a mid-stream start; then the
//!    server side of each connection is chosen and answers paired with
//!    requests.

pub mod file;
pub mod frames;
pub mod link;
pub mod reassembly;

pub use file::CaptureError;
pub use frames::Frame;

use frames::Splitter;
use link::{Segment, Skip, Transport};
use reassembly::{HalfStream, Piece};
use std::collections::HashMap;
use std::io::Read;
use std::net::SocketAddr;

/// The port x700 serves on unless told otherwise.
pub const SERVER_PORT_DEFAULT: u16 = 7700;

/// How to read a capture.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// The server's port: the side of a connection that uses it is the
    /// server.
    pub server_port: u16,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            server_port: SERVER_PORT_DEFAULT,
        }
    }
}

/// TCP or UDP.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Protocol {
    /// A TCP connection.
    Tcp,
    /// The datagrams between one client address and one server address.
    Udp,
}

impl Protocol {
    /// Lower-case name, as printed.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// How a connection's server side was told from its client side, most
/// certain first.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ServerChosenBy {
    /// It uses the server port.
    Port,
    /// The other side opened the connection (SYN without ACK).
    Syn,
    /// It sent answers (frames with a non-zero status).
    Status,
    /// A guess: the other side sent the first frame.
    FirstFrame,
}

/// One connection's frames.
#[derive(Clone, Debug)]
pub struct Connection {
    /// TCP or UDP.
    pub protocol: Protocol,
    /// The client's address.
    pub client: SocketAddr,
    /// The server's address.
    pub server: SocketAddr,
    /// How `server` was chosen.
    pub server_chosen_by: ServerChosenBy,
    /// The packet number of its first packet.
    pub first_packet: u64,
    /// Both directions were read from their first byte (TCP: their SYN
    /// was seen).
    pub from_start: bool,
    /// Holes in its streams (bytes the capture lacks).
    pub gaps: u64,
    /// Client to server, in stream order.
    pub requests: Vec<Frame>,
    /// Server to client, in stream order.
    pub answers: Vec<Frame>,
}

/// Counts over the whole capture.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct Summary {
    /// Packets read.
    pub packets: u64,
    /// Packets of a link type this reader does not know.
    pub skipped_link_type: u64,
    /// Packets that were neither TCP nor UDP over IP.
    pub skipped_protocol: u64,
    /// Packets whose headers did not parse.
    pub skipped_malformed: u64,
    /// TCP bytes seen more than once (retransmissions, overlaps).
    pub repeated_bytes: u64,
    /// Holes in TCP streams.
    pub gaps: u64,
    /// Times a stream's frame boundaries were looked for again.
    pub resyncs: u64,
    /// Bytes that made no frame (before the first boundary found, after a
    /// hole, or left at the end).
    pub unframed_bytes: u64,
}

/// Everything read from a capture.
#[derive(Clone, Debug, Default)]
pub struct Capture {
    /// The connections, in the order of their first packet.
    pub connections: Vec<Connection>,
    /// Counts.
    pub summary: Summary,
    /// Why reading stopped before the end of the file, if it did; the
    /// connections hold what was read before it.
    pub error: Option<CaptureError>,
}

/// One flow being read: sides are numbered 0 (the sender of its first
/// packet) and 1.
struct Flow {
    protocol: Protocol,
    ends: [SocketAddr; 2],
    first_packet: u64,
    halves: [HalfStream; 2],
    splitters: [Splitter; 2],
    frames: [Vec<Frame>; 2],
    opener: Option<usize>,
}

impl Flow {
    fn new(protocol: Protocol, source: SocketAddr, destination: SocketAddr, packet: u64) -> Flow {
        Flow {
            protocol,
            ends: [source, destination],
            first_packet: packet,
            halves: Default::default(),
            splitters: Default::default(),
            frames: Default::default(),
            opener: None,
        }
    }

    fn closed(&self) -> bool {
        self.halves.iter().any(|half| half.closed)
    }
}

/// The flows of a capture being read.
#[derive(Default)]
struct Flows {
    flows: Vec<Flow>,
    /// The open flow of each address pair (lower address first).
    by_ends: HashMap<(Protocol, SocketAddr, SocketAddr), usize>,
    pieces: Vec<Piece>,
    summary: Summary,
}

impl Flows {
    fn packet(&mut self, number: u64, time_ns: u64, segment: &Segment<'_>) {
        let protocol = match segment.transport {
            Transport::Tcp { .. } => Protocol::Tcp,
            Transport::Udp { .. } => Protocol::Udp,
        };
        let key = if segment.source <= segment.destination {
            (protocol, segment.source, segment.destination)
        } else {
            (protocol, segment.destination, segment.source)
        };
        let opens = matches!(
            segment.transport,
            Transport::Tcp {
                syn: true,
                ack: false,
                ..
            }
        );
        let existing = self.by_ends.get(&key).copied();
        // A SYN on a flow that has closed opens a new connection on the
        // same addresses.
        let index = match existing {
            Some(index) if !(opens && self.flows[index].closed()) => index,
            _ => {
                self.flows.push(Flow::new(
                    protocol,
                    segment.source,
                    segment.destination,
                    number,
                ));
                self.by_ends.insert(key, self.flows.len() - 1);
                self.flows.len() - 1
            }
        };
        let flow = &mut self.flows[index];
        let side = usize::from(flow.ends[0] != segment.source);
        match segment.transport {
            Transport::Udp { payload } => {
                frames::split_datagram(time_ns, payload, &mut flow.frames[side]);
            }
            Transport::Tcp {
                seq,
                syn,
                ack,
                fin,
                rst,
                payload,
            } => {
                if syn && !ack {
                    flow.opener = Some(side);
                }
                let half = &mut flow.halves[side];
                let started = half.from_start;
                self.pieces.clear();
                half.segment(time_ns, seq, syn, fin || rst, payload, &mut self.pieces);
                if half.from_start && !started {
                    flow.splitters[side] = Splitter::from_start();
                }
                feed(
                    &mut flow.splitters[side],
                    &self.pieces,
                    &mut flow.frames[side],
                );
            }
        }
    }

    fn finish(mut self, server_port: u16) -> (Vec<Connection>, Summary) {
        let mut connections = Vec::with_capacity(self.flows.len());
        for mut flow in self.flows {
            for side in 0..2 {
                self.pieces.clear();
                flow.halves[side].finish(&mut self.pieces);
                feed(
                    &mut flow.splitters[side],
                    &self.pieces,
                    &mut flow.frames[side],
                );
                let half = &flow.halves[side];
                let splitter = &flow.splitters[side];
                self.summary.repeated_bytes += half.repeated_bytes;
                self.summary.gaps += half.gaps;
                self.summary.resyncs += splitter.resyncs;
                self.summary.unframed_bytes +=
                    splitter.dropped_bytes + splitter.leftover_bytes() as u64;
            }
            let (server, chosen_by) = server_side(&flow, server_port);
            let [mut frames_0, mut frames_1] = flow.frames;
            let (mut requests, mut answers) = if server == 1 {
                (std::mem::take(&mut frames_0), std::mem::take(&mut frames_1))
            } else {
                (std::mem::take(&mut frames_1), std::mem::take(&mut frames_0))
            };
            if requests.is_empty() && answers.is_empty() {
                continue;
            }
            frames::pair(&mut requests, &mut answers);
            connections.push(Connection {
                protocol: flow.protocol,
                client: flow.ends[1 - server],
                server: flow.ends[server],
                server_chosen_by: chosen_by,
                first_packet: flow.first_packet,
                from_start: flow.protocol == Protocol::Udp
                    || flow.halves.iter().all(|half| half.from_start),
                gaps: flow.halves.iter().map(|half| half.gaps).sum(),
                requests,
                answers,
            });
        }
        (connections, self.summary)
    }
}

fn feed(splitter: &mut Splitter, pieces: &[Piece], out: &mut Vec<Frame>) {
    for piece in pieces {
        match piece {
            Piece::Data { time_ns, bytes } => splitter.data(*time_ns, bytes, out),
            Piece::Gap { .. } => splitter.gap(),
        }
    }
}

/// Which side of a flow is the server, and by which rule: the side on the
/// server port; else the side that did not open the connection; else the
/// side that sent frames with a non-zero status (only answers carry one);
/// else the side that did not send the first frame.
fn server_side(flow: &Flow, server_port: u16) -> (usize, ServerChosenBy) {
    let on_port = flow.ends.map(|end| end.port() == server_port);
    if on_port[0] != on_port[1] {
        return (usize::from(on_port[1]), ServerChosenBy::Port);
    }
    if let Some(opener) = flow.opener {
        return (1 - opener, ServerChosenBy::Syn);
    }
    let answers = flow
        .frames
        .each_ref()
        .map(|frames| frames.iter().any(|frame| frame.header.status != 0));
    if answers[0] != answers[1] {
        return (usize::from(answers[1]), ServerChosenBy::Status);
    }
    let first = |side: usize| flow.frames[side].first().map_or(u64::MAX, |f| f.time_ns);
    (
        usize::from(first(0) <= first(1)),
        ServerChosenBy::FirstFrame,
    )
}

/// Reads a whole capture: its connections and their frames, requests
/// paired with answers. Never panics, whatever the bytes; a capture that
/// is truncated or malformed part-way gives what was read before the
/// failing packet, and the error.
pub fn read_capture<R: Read + Send>(reader: R, options: &Options) -> Capture {
    let mut flows = Flows::default();
    let mut packets = 0u64;
    let result = file::read_packets(reader, |packet| {
        packets += 1;
        match link::decode(packet.link_type, packet.bytes) {
            Ok(segment) => flows.packet(packet.number, packet.time_ns, &segment),
            Err(Skip::LinkType(_)) => flows.summary.skipped_link_type += 1,
            Err(Skip::Protocol) => flows.summary.skipped_protocol += 1,
            Err(Skip::Malformed) => flows.summary.skipped_malformed += 1,
        }
    });
    let (connections, mut summary) = flows.finish(options.server_port);
    summary.packets = packets;
    Capture {
        connections,
        summary,
        error: result.err(),
    }
}
