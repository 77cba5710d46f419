//! From a captured packet to what reassembly needs: the two addresses and
//! the TCP segment (sequence number, flags, payload) or UDP payload. The
//! link layers x700 captures come from: Ethernet (VLAN tags included),
//! Linux cooked v1 and v2 (`tcpdump -i any`), BSD loopback and raw IP.
//! IP, TCP and UDP headers are read by the `etherparse` crate.

use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use std::net::{IpAddr, SocketAddr};

/// LINKTYPE_NULL: BSD loopback, a 4-byte address family in the capturing
/// host's byte order.
pub const LINK_NULL: u32 = 0;
/// LINKTYPE_ETHERNET.
pub const LINK_ETHERNET: u32 = 1;
/// LINKTYPE_RAW as some systems number it (DLT_RAW).
pub const LINK_RAW_DLT: u32 = 12;
/// LINKTYPE_RAW: the packet starts with the IP header.
pub const LINK_RAW: u32 = 101;
/// LINKTYPE_LOOP: like NULL, the family in network byte order (OpenBSD).
pub const LINK_LOOP: u32 = 108;
/// LINKTYPE_LINUX_SLL: Linux cooked v1, a 16-byte header.
pub const LINK_LINUX_SLL: u32 = 113;
/// LINKTYPE_IPV4.
pub const LINK_IPV4: u32 = 228;
/// LINKTYPE_IPV6.
pub const LINK_IPV6: u32 = 229;
/// LINKTYPE_LINUX_SLL2: Linux cooked v2, a 20-byte header.
pub const LINK_LINUX_SLL2: u32 = 276;

const ETHER_TYPE_IPV4: u16 = 0x0800;
const ETHER_TYPE_IPV6: u16 = 0x86DD;
const SLL_HEADER_BYTES: usize = 16;
const SLL2_HEADER_BYTES: usize = 20;
const NULL_HEADER_BYTES: usize = 4;

/// The transport part of a packet.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Transport<'a> {
    /// A TCP segment.
    Tcp {
        /// Sequence number of the first payload byte (of the SYN if set).
        seq: u32,
        /// SYN flag.
        syn: bool,
        /// ACK flag (a SYN without it opens the connection: its sender is
        /// the client).
        ack: bool,
        /// FIN flag.
        fin: bool,
        /// RST flag.
        rst: bool,
        /// The segment's payload.
        payload: &'a [u8],
    },
    /// A UDP datagram's payload.
    Udp {
        /// The payload.
        payload: &'a [u8],
    },
}

/// A packet reduced to what x700 needs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Segment<'a> {
    /// Sender.
    pub source: SocketAddr,
    /// Receiver.
    pub destination: SocketAddr,
    /// TCP segment or UDP payload.
    pub transport: Transport<'a>,
}

/// Why a packet carries nothing for x700; such packets are skipped and
/// counted.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Skip {
    /// A link type this reader does not know.
    LinkType(u32),
    /// Not IP (ARP, ...), or IP without TCP or UDP (ICMP, a later fragment).
    Protocol,
    /// Headers that do not parse (cut by the snap length, or corrupt).
    Malformed,
}

/// Reads the addresses and the TCP or UDP part of a captured packet.
/// Never panics, whatever the bytes.
pub fn decode(link_type: u32, bytes: &[u8]) -> Result<Segment<'_>, Skip> {
    let sliced = match link_type {
        LINK_ETHERNET => SlicedPacket::from_ethernet(bytes),
        LINK_RAW | LINK_RAW_DLT | LINK_IPV4 | LINK_IPV6 => SlicedPacket::from_ip(bytes),
        LINK_NULL | LINK_LOOP => {
            // The family's byte order depends on the capturing host; the IP
            // header's own version nibble says as much.
            let ip = bytes.get(NULL_HEADER_BYTES..).ok_or(Skip::Malformed)?;
            SlicedPacket::from_ip(ip)
        }
        LINK_LINUX_SLL => {
            let protocol = be16(bytes, 14).ok_or(Skip::Malformed)?;
            ip_after(bytes, SLL_HEADER_BYTES, protocol)?
        }
        LINK_LINUX_SLL2 => {
            let protocol = be16(bytes, 0).ok_or(Skip::Malformed)?;
            ip_after(bytes, SLL2_HEADER_BYTES, protocol)?
        }
        other => return Err(Skip::LinkType(other)),
    }
    .map_err(|_| Skip::Malformed)?;
    let (source_ip, destination_ip) = match &sliced.net {
        Some(NetSlice::Ipv4(ip)) => (
            IpAddr::V4(ip.header().source_addr()),
            IpAddr::V4(ip.header().destination_addr()),
        ),
        Some(NetSlice::Ipv6(ip)) => (
            IpAddr::V6(ip.header().source_addr()),
            IpAddr::V6(ip.header().destination_addr()),
        ),
        _ => return Err(Skip::Protocol),
    };
    let (source_port, destination_port, transport) = match &sliced.transport {
        Some(TransportSlice::Tcp(tcp)) => (
            tcp.source_port(),
            tcp.destination_port(),
            Transport::Tcp {
                seq: tcp.sequence_number(),
                syn: tcp.syn(),
                ack: tcp.ack(),
                fin: tcp.fin(),
                rst: tcp.rst(),
                payload: tcp.payload(),
            },
        ),
        Some(TransportSlice::Udp(udp)) => (
            udp.source_port(),
            udp.destination_port(),
            Transport::Udp {
                payload: udp.payload(),
            },
        ),
        _ => return Err(Skip::Protocol),
    };
    Ok(Segment {
        source: SocketAddr::new(source_ip, source_port),
        destination: SocketAddr::new(destination_ip, destination_port),
        transport,
    })
}

/// The IP packet after a cooked header, if its protocol is IP.
fn ip_after(
    bytes: &[u8],
    header_bytes: usize,
    protocol: u16,
) -> Result<Result<SlicedPacket<'_>, etherparse::err::packet::SliceError>, Skip> {
    if protocol != ETHER_TYPE_IPV4 && protocol != ETHER_TYPE_IPV6 {
        return Err(Skip::Protocol);
    }
    let ip = bytes.get(header_bytes..).ok_or(Skip::Malformed)?;
    Ok(SlicedPacket::from_ip(ip))
}

fn be16(bytes: &[u8], at: usize) -> Option<u16> {
    let pair = bytes.get(at..at + 2)?;
    Some(u16::from_be_bytes([pair[0], pair[1]]))
}
