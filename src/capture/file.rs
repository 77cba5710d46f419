//! Reading the packets of a capture file: pcap (both byte orders,
//! microsecond and nanosecond timestamps) and pcapng (section headers,
//! several interfaces, enhanced and simple packet blocks), through the
//! `pcap-parser` crate. Pure over a `Read`; nothing here looks inside the
//! packets (that is `link`).

use pcap_parser::pcapng::Block;
use pcap_parser::traits::PcapNGPacketBlock;
use pcap_parser::{create_reader, PcapBlockOwned, PcapError};
use std::io::Read;

/// The reader's first buffer; it grows for larger blocks.
const BUFFER_BYTES: usize = 64 * 1024;
/// The largest block a capture may hold (tcpdump's snap length is 256 KiB):
/// a length field above this is taken for corruption, not grown into.
pub const BLOCK_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Interfaces one pcapng section may describe.
pub const INTERFACES_MAX: usize = 1024;

/// One packet as captured.
#[derive(Clone, Copy, Debug)]
pub struct Packet<'a> {
    /// 1-based, in file order, as Wireshark numbers them.
    pub number: u64,
    /// Capture time, nanoseconds since the Unix epoch.
    pub time_ns: u64,
    /// The link type of its interface (LINKTYPE_* values of tcpdump.org).
    pub link_type: u32,
    /// The bytes captured, link-layer header first.
    pub bytes: &'a [u8],
}

/// Why a capture cannot be read past a packet.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[error("packet {packet}: {reason}")]
pub struct CaptureError {
    /// The number the failing packet would have had (1-based): the packets
    /// before it were read.
    pub packet: u64,
    /// What is wrong.
    pub reason: String,
}

/// A pcapng interface: its link type and how to read its timestamps.
struct Interface {
    link_type: u32,
    units_per_s: u64,
    offset_s: i64,
}

/// Calls `visit` with every packet of the capture in `reader`, in file
/// order; returns the number of packets read. A truncated or malformed file
/// stops the reading with an error naming the packet it stopped at: the
/// packets before it have all been visited.
pub fn read_packets<R: Read + Send>(
    reader: R,
    mut visit: impl FnMut(&Packet<'_>),
) -> Result<u64, CaptureError> {
    let fail = |packet: u64, reason: String| CaptureError { packet, reason };
    let mut source = match create_reader(BUFFER_BYTES, reader) {
        Ok(source) => source,
        Err(PcapError::Eof) => return Err(fail(1, "the capture is empty".to_string())),
        Err(error) => {
            return Err(fail(
                1,
                format!("not a pcap or pcapng file ({})", describe(&error)),
            ))
        }
    };
    let mut packets = 0u64;
    // Legacy pcap: one link type and resolution for the whole file.
    let mut legacy: Option<(u32, u64)> = None;
    let mut interfaces: Vec<Interface> = Vec::new();
    let mut buffer_bytes = BUFFER_BYTES;
    let mut last_time_ns = 0u64;
    loop {
        let number = packets + 1;
        match source.next() {
            Ok((offset, block)) => {
                let packet = match &block {
                    PcapBlockOwned::LegacyHeader(header) => {
                        let units = if header.is_nanosecond_precision() {
                            1_000_000_000
                        } else {
                            1_000_000
                        };
                        legacy = Some((u32::from(header.network.0 as u16), units));
                        None
                    }
                    PcapBlockOwned::Legacy(block) => {
                        let Some((link_type, units_per_s)) = legacy else {
                            return Err(fail(number, "packet before the file header".into()));
                        };
                        let length = (block.caplen as usize).min(block.data.len());
                        Some(Packet {
                            number,
                            time_ns: time_ns(
                                u64::from(block.ts_sec) * units_per_s + u64::from(block.ts_usec),
                                units_per_s,
                                0,
                            ),
                            link_type,
                            bytes: &block.data[..length],
                        })
                    }
                    PcapBlockOwned::NG(Block::SectionHeader(_)) => {
                        // Interface numbers restart with each section.
                        interfaces.clear();
                        None
                    }
                    PcapBlockOwned::NG(Block::InterfaceDescription(interface)) => {
                        if interfaces.len() == INTERFACES_MAX {
                            return Err(fail(number, "too many interfaces".into()));
                        }
                        let Some(units_per_s) = interface.ts_resolution() else {
                            return Err(fail(number, "impossible timestamp resolution".into()));
                        };
                        interfaces.push(Interface {
                            link_type: u32::from(interface.linktype.0 as u16),
                            units_per_s,
                            offset_s: interface.ts_offset(),
                        });
                        None
                    }
                    PcapBlockOwned::NG(Block::EnhancedPacket(block)) => {
                        let interface = usize::try_from(block.if_id)
                            .ok()
                            .and_then(|id| interfaces.get(id));
                        let Some(interface) = interface else {
                            return Err(fail(
                                number,
                                format!("interface {} was never described", block.if_id),
                            ));
                        };
                        let ticks = (u64::from(block.ts_high) << 32) | u64::from(block.ts_low);
                        Some(Packet {
                            number,
                            time_ns: time_ns(ticks, interface.units_per_s, interface.offset_s),
                            link_type: interface.link_type,
                            bytes: block.packet_data(),
                        })
                    }
                    PcapBlockOwned::NG(Block::SimplePacket(block)) => {
                        // A simple packet belongs to the first interface and
                        // has no timestamp: it takes the time of the packet
                        // before it, so times never go backwards.
                        let Some(interface) = interfaces.first() else {
                            return Err(fail(number, "packet before any interface".into()));
                        };
                        Some(Packet {
                            number,
                            time_ns: last_time_ns,
                            link_type: interface.link_type,
                            bytes: block.packet_data(),
                        })
                    }
                    // Statistics, name resolution, comments: nothing to replay.
                    PcapBlockOwned::NG(_) => None,
                };
                if let Some(packet) = packet {
                    last_time_ns = packet.time_ns;
                    visit(&packet);
                    packets += 1;
                }
                source.consume(offset);
            }
            Err(PcapError::Eof) => return Ok(packets),
            Err(PcapError::Incomplete(_)) => {
                if source.reader_exhausted() {
                    return Err(fail(number, "the capture ends inside this packet".into()));
                }
                let held = source.data().len();
                source
                    .refill()
                    .map_err(|error| fail(number, describe(&error)))?;
                if source.data().len() == held && !source.reader_exhausted() {
                    // The buffer is full and still holds no whole block.
                    if buffer_bytes >= BLOCK_BYTES_MAX {
                        return Err(fail(
                            number,
                            format!("a block larger than {BLOCK_BYTES_MAX} bytes"),
                        ));
                    }
                    buffer_bytes *= 2;
                    source.grow(buffer_bytes);
                }
            }
            Err(PcapError::BufferTooSmall) => {
                if buffer_bytes >= BLOCK_BYTES_MAX {
                    return Err(fail(
                        number,
                        format!("a block larger than {BLOCK_BYTES_MAX} bytes"),
                    ));
                }
                buffer_bytes *= 2;
                source.grow(buffer_bytes);
                source
                    .refill()
                    .map_err(|error| fail(number, describe(&error)))?;
            }
            Err(error) => return Err(fail(number, describe(&error))),
        }
    }
}

/// Timestamps as nanoseconds since the epoch, saturating (a corrupt
/// timestamp gives a wrong time, never a panic).
fn time_ns(ticks: u64, units_per_s: u64, offset_s: i64) -> u64 {
    let units_per_s = units_per_s.max(1);
    let seconds = (ticks / units_per_s).saturating_add_signed(offset_s);
    let fraction = u128::from(ticks % units_per_s) * 1_000_000_000 / u128::from(units_per_s);
    seconds
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::try_from(fraction).unwrap_or(u64::MAX))
}

fn describe(error: &PcapError<&[u8]>) -> String {
    match error {
        PcapError::Eof | PcapError::UnexpectedEof | PcapError::Incomplete(_) => {
            "the capture ends inside this packet".into()
        }
        PcapError::ReadError => "the file could not be read".into(),
        PcapError::HeaderNotRecognized => "not a pcap or pcapng file".into(),
        other => format!("malformed block ({other:?})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_convert_from_each_resolution() {
        assert_eq!(time_ns(1_500_000, 1_000_000, 0), 1_500_000_000);
        assert_eq!(time_ns(1_500_000_000, 1_000_000_000, 0), 1_500_000_000);
        assert_eq!(time_ns(3, 2, 10), 11_500_000_000);
        assert_eq!(time_ns(u64::MAX, 1, 0), u64::MAX);
    }
}
