//! The pcapng bytes the node writes: a section header, one Ethernet
//! interface with nanosecond timestamps, and one enhanced packet block per
//! packet. Pure functions over buffers; the writer thread does the I/O.
//!
//! The node sees bytes, not packets, so each packet is made up here: an
//! Ethernet header (fixed, locally administered MAC addresses), an IPv4 or
//! IPv6 header and a TCP or UDP header whose addresses and ports are the
//! connection's real ones, with correct checksums, so tshark shows no
//! errors and a reassembling reader sees a clean stream.

use std::net::{IpAddr, SocketAddr};

/// Link type of the interface: Ethernet.
pub const LINKTYPE_ETHERNET: u16 = 1;
/// Largest TCP or UDP payload of one made-up packet: an IPv4 total length
/// is 16 bits, and a write of a megabyte of answers is split into packets
/// of at most this.
pub const PAYLOAD_BYTES_MAX: usize = 60_000;
/// Bytes of the section header block plus the interface block, written at
/// the head of every file.
pub const FILE_HEADER_BYTES: usize = 28 + 32;
/// Bytes an enhanced packet block adds to its packet (before padding).
pub const PACKET_BLOCK_OVERHEAD_BYTES: usize = 32;
/// The largest enhanced packet block written.
pub const PACKET_BLOCK_BYTES_MAX: usize =
    PACKET_BLOCK_OVERHEAD_BYTES + ETHERNET_BYTES + 40 + 20 + PAYLOAD_BYTES_MAX + 3;

const ETHERNET_BYTES: usize = 14;
/// The node's made-up MAC address (locally administered).
const MAC_NODE: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x07, 0x00];
/// Every client's made-up MAC address (locally administered).
const MAC_CLIENT: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x07, 0x01];

/// TCP flag bits.
pub mod flags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// PSH.
    pub const PSH: u8 = 0x08;
    /// ACK.
    pub const ACK: u8 = 0x10;
}

/// The section header and interface description blocks that open a file.
pub fn file_header(out: &mut Vec<u8>) {
    // Section header block: type, length, byte-order magic, version 1.0,
    // section length unknown (-1), length again.
    out.extend_from_slice(&0x0A0D_0D0A_u32.to_le_bytes());
    out.extend_from_slice(&28u32.to_le_bytes());
    out.extend_from_slice(&0x1A2B_3C4D_u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&(-1i64).to_le_bytes());
    out.extend_from_slice(&28u32.to_le_bytes());
    // Interface description block: Ethernet, no snap length, option
    // if_tsresol = 9 (nanoseconds), end of options.
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&32u32.to_le_bytes());
    out.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&9u16.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&[9, 0, 0, 0]);
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&32u32.to_le_bytes());
}

/// What a made-up packet carries above IP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// A TCP segment.
    Tcp {
        /// Sequence number of its first payload byte (or of the SYN/FIN).
        seq: u32,
        /// Acknowledgement number.
        ack: u32,
        /// `flags::*`.
        flags: u8,
    },
    /// A UDP datagram.
    Udp,
}

/// Appends one enhanced packet block holding a made-up Ethernet packet
/// from `source` to `destination` with `payload` (at most
/// `PAYLOAD_BYTES_MAX` bytes), stamped `at_ns` nanoseconds after the epoch.
/// `from_client` chooses the MAC addresses. Both addresses must be of the
/// same family (the caller maps IPv4 addresses to IPv6 otherwise).
pub fn packet_block(
    out: &mut Vec<u8>,
    at_ns: u64,
    source: SocketAddr,
    destination: SocketAddr,
    from_client: bool,
    transport: Transport,
    payload: &[u8],
) {
    assert!(payload.len() <= PAYLOAD_BYTES_MAX);
    let start = out.len();
    out.extend_from_slice(&6u32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes()); // length, set below
    out.extend_from_slice(&0u32.to_le_bytes()); // interface 0
                                                // Timestamps split in two 32-bit halves (the casts keep each half).
    #[allow(clippy::cast_possible_truncation)]
    {
        out.extend_from_slice(&((at_ns >> 32) as u32).to_le_bytes());
        out.extend_from_slice(&(at_ns as u32).to_le_bytes());
    }
    out.extend_from_slice(&0u32.to_le_bytes()); // captured length, set below
    out.extend_from_slice(&0u32.to_le_bytes()); // original length, set below
    let packet_start = out.len();
    let (mac_source, mac_destination) = if from_client {
        (MAC_CLIENT, MAC_NODE)
    } else {
        (MAC_NODE, MAC_CLIENT)
    };
    out.extend_from_slice(&mac_destination);
    out.extend_from_slice(&mac_source);
    let transport_bytes = match transport {
        Transport::Tcp { .. } => 20,
        Transport::Udp => 8,
    };
    let protocol: u8 = match transport {
        Transport::Tcp { .. } => 6,
        Transport::Udp => 17,
    };
    // At most PAYLOAD_BYTES_MAX + 60: fits 16 bits.
    let segment_len = u16::try_from(transport_bytes + payload.len()).unwrap_or(u16::MAX);
    let (ip_source, ip_destination) = (source.ip(), destination.ip());
    let pseudo_sum = match (ip_source, ip_destination) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.extend_from_slice(&0x0800u16.to_be_bytes());
            let ip_start = out.len();
            out.push(0x45);
            out.push(0);
            out.extend_from_slice(&(segment_len + 20).to_be_bytes());
            out.extend_from_slice(&[0, 0, 0x40, 0]); // id 0, don't fragment
            out.push(64);
            out.push(protocol);
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
            let checksum = !fold(sum(&out[ip_start..ip_start + 20]));
            out[ip_start + 10..ip_start + 12].copy_from_slice(&checksum.to_be_bytes());
            sum(&s.octets()) + sum(&d.octets())
        }
        _ => {
            let s = to_v6(ip_source);
            let d = to_v6(ip_destination);
            out.extend_from_slice(&0x86DDu16.to_be_bytes());
            out.extend_from_slice(&[0x60, 0, 0, 0]);
            out.extend_from_slice(&segment_len.to_be_bytes());
            out.push(protocol);
            out.push(64);
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
            sum(&s.octets()) + sum(&d.octets())
        }
    };
    let segment_start = out.len();
    out.extend_from_slice(&source.port().to_be_bytes());
    out.extend_from_slice(&destination.port().to_be_bytes());
    match transport {
        Transport::Tcp { seq, ack, flags } => {
            out.extend_from_slice(&seq.to_be_bytes());
            out.extend_from_slice(&ack.to_be_bytes());
            out.push(5 << 4);
            out.push(flags);
            out.extend_from_slice(&65_535u16.to_be_bytes()); // window
            out.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent
        }
        Transport::Udp => {
            out.extend_from_slice(&segment_len.to_be_bytes());
            out.extend_from_slice(&[0, 0]);
        }
    }
    out.extend_from_slice(payload);
    let checksum_at = segment_start + if protocol == 6 { 16 } else { 6 };
    let total =
        pseudo_sum + u64::from(protocol) + u64::from(segment_len) + sum(&out[segment_start..]);
    let mut checksum = !fold(total);
    if checksum == 0 && protocol == 17 {
        // UDP sends a computed zero as all ones (zero means "none").
        checksum = 0xFFFF;
    }
    out[checksum_at..checksum_at + 2].copy_from_slice(&checksum.to_be_bytes());
    let packet_len = out.len() - packet_start;
    out.resize(out.len() + (4 - packet_len % 4) % 4, 0);
    let block_len = out.len() - start + 4;
    // Bounded by PACKET_BLOCK_BYTES_MAX: fits 32 bits.
    let block_len = u32::try_from(block_len).unwrap_or(u32::MAX);
    let packet_len = u32::try_from(packet_len).unwrap_or(u32::MAX);
    out.extend_from_slice(&block_len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&block_len.to_le_bytes());
    out[start + 20..start + 24].copy_from_slice(&packet_len.to_le_bytes());
    out[start + 24..start + 28].copy_from_slice(&packet_len.to_le_bytes());
}

/// An IPv4 address as IPv4-mapped IPv6 (for a pair of mixed families).
fn to_v6(ip: IpAddr) -> std::net::Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

/// The ones' complement sum of big-endian 16-bit words (an odd last byte is
/// padded with zero), not yet folded.
fn sum(bytes: &[u8]) -> u64 {
    let mut chunks = bytes.chunks_exact(2);
    let mut total: u64 = chunks
        .by_ref()
        .map(|pair| u64::from(u16::from_be_bytes([pair[0], pair[1]])))
        .sum();
    if let [last] = chunks.remainder() {
        total += u64::from(*last) << 8;
    }
    total
}

/// Folds a sum to 16 bits.
fn fold(mut total: u64) -> u16 {
    while total > 0xFFFF {
        total = (total & 0xFFFF) + (total >> 16);
    }
    // Folded to 16 bits just above.
    u16::try_from(total).unwrap_or(u16::MAX)
}

#[cfg(test)]
mod tests {
    //! Proves the block layout (lengths, padding, timestamps) and that the
    //! IPv4 and TCP checksums verify, on made-up packets.
    use super::*;

    fn u32_at(bytes: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
    }

    #[test]
    fn file_header_is_its_stated_size() {
        let mut out = Vec::new();
        file_header(&mut out);
        assert_eq!(out.len(), FILE_HEADER_BYTES);
        assert_eq!(u32_at(&out, 4), 28);
        assert_eq!(u32_at(&out, 24), 28);
        assert_eq!(u32_at(&out, 32), 32);
        assert_eq!(u32_at(&out, 56), 32);
    }

    #[test]
    fn tcp_packet_block_lengths_and_checksums() {
        let mut out = Vec::new();
        let client: SocketAddr = "10.1.2.3:40000".parse().unwrap();
        let node: SocketAddr = "10.9.8.7:7700".parse().unwrap();
        let payload = b"hello";
        let transport = Transport::Tcp {
            seq: 1000,
            ack: 2000,
            flags: flags::ACK | flags::PSH,
        };
        packet_block(
            &mut out,
            (5 << 32) + 7,
            client,
            node,
            true,
            transport,
            payload,
        );
        assert_eq!(out.len() % 4, 0);
        let block_len = u32_at(&out, 4) as usize;
        assert_eq!(block_len, out.len());
        assert_eq!(u32_at(&out, block_len - 4) as usize, block_len);
        assert_eq!(u32_at(&out, 12), 5);
        assert_eq!(u32_at(&out, 16), 7);
        let packet_len = u32_at(&out, 20) as usize;
        assert_eq!(packet_len, 14 + 20 + 20 + payload.len());
        let packet = &out[28..28 + packet_len];
        let ip = &packet[14..34];
        assert_eq!(fold(sum(ip)), 0xFFFF, "IPv4 header checksum verifies");
        let segment = &packet[34..];
        let pseudo = sum(&ip[12..20]) + 6 + segment.len() as u64;
        assert_eq!(fold(pseudo + sum(segment)), 0xFFFF, "TCP checksum verifies");
        assert_eq!(&segment[20..], payload);
    }

    #[test]
    fn udp_over_ipv6_checksum_verifies() {
        let mut out = Vec::new();
        let client: SocketAddr = "[::1]:5000".parse().unwrap();
        let node: SocketAddr = "[::1]:7700".parse().unwrap();
        packet_block(&mut out, 0, node, client, false, Transport::Udp, b"abc");
        let packet_len = u32_at(&out, 20) as usize;
        let packet = &out[28..28 + packet_len];
        assert_eq!(&packet[12..14], &[0x86, 0xDD]);
        let ip = &packet[14..54];
        let segment = &packet[54..];
        let pseudo = sum(&ip[8..40]) + 17 + segment.len() as u64;
        assert_eq!(fold(pseudo + sum(segment)), 0xFFFF);
    }
}
