//! The frame every message between nodes travels in (docs/PROTOCOL.md
//! part 2): a 16-byte little-endian header, then the body. Splitting a byte
//! stream into frames is a pure function here; the sockets are in
//! `client.rs` and `server.rs`.
//!
//! | offset | width | field |
//! |---|---|---|
//! | 0 | 4 | `length`: whole frame in bytes, header included |
//! | 4 | 1 | `kind`: the message (`Kind`) |
//! | 5 | 3 | reserved, 0 |
//! | 8 | 8 | `request_id`: echoed by the answer |

/// Bytes of the frame header.
pub const HEADER_BYTES: usize = 16;

/// Largest frame, header included, either way. An APPEND_ENTRIES request
/// carries up to `ENTRIES_PER_APPEND_MAX` entries of up to a write batch
/// (1 MiB) each, but never more than this many bytes: the sender splits.
pub const FRAME_BYTES_MAX: usize = 16 << 20;

/// Most entries one APPEND_ENTRIES request carries.
pub const ENTRIES_PER_APPEND_MAX: usize = 256;

/// The message a frame holds. An answer's kind is its request's with the
/// high bit set; `Error` answers any request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Handshake, first step: who I am, whom I want, my nonce.
    Hello = 0x01,
    /// Handshake, last step: the connecting node's proof.
    Proof = 0x02,
    /// A candidate asks for a vote.
    Vote = 0x10,
    /// A leader sends entries (or a heartbeat, with none).
    AppendEntries = 0x11,
    /// A leader sends a chunk of a snapshot.
    InstallSnapshot = 0x12,
    /// Answer to `Hello`: the accepting node's nonce.
    HelloAnswer = 0x81,
    /// Answer to `Proof`: the accepting node's proof; the connection is
    /// open for requests.
    Welcome = 0x82,
    /// Answer to `Vote`.
    VoteAnswer = 0x90,
    /// Answer to `AppendEntries`.
    AppendEntriesAnswer = 0x91,
    /// Answer to `InstallSnapshot`.
    InstallSnapshotAnswer = 0x92,
    /// Answer to any request that could not be served.
    Error = 0xFF,
}

impl Kind {
    /// The kind a code names, if any.
    pub fn from_code(code: u8) -> Option<Kind> {
        Some(match code {
            0x01 => Kind::Hello,
            0x02 => Kind::Proof,
            0x10 => Kind::Vote,
            0x11 => Kind::AppendEntries,
            0x12 => Kind::InstallSnapshot,
            0x81 => Kind::HelloAnswer,
            0x82 => Kind::Welcome,
            0x90 => Kind::VoteAnswer,
            0x91 => Kind::AppendEntriesAnswer,
            0x92 => Kind::InstallSnapshotAnswer,
            0xFF => Kind::Error,
            _ => return None,
        })
    }
}

/// A decoded frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Whole frame in bytes.
    pub length: u32,
    /// The message.
    pub kind: Kind,
    /// Echoed by the answer; 0 during the handshake.
    pub request_id: u64,
}

/// Why a byte stream cannot be split into frames: the connection closes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// `length` below the header or above `FRAME_BYTES_MAX`.
    #[error("peer frame length {0} outside {HEADER_BYTES}..={FRAME_BYTES_MAX}")]
    Length(u32),
    /// A kind no version of this protocol defines.
    #[error("peer frame kind {0:#04x} unknown")]
    Kind(u8),
    /// Reserved header bytes that are not zero.
    #[error("peer frame reserved bytes not zero")]
    Reserved,
}

/// Reads a header from the first `HEADER_BYTES` of `bytes`; `Ok(None)` if
/// fewer bytes are there.
pub fn decode_header(bytes: &[u8]) -> Result<Option<Header>, FrameError> {
    let Some(head) = bytes.get(..HEADER_BYTES) else {
        return Ok(None);
    };
    let length = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    if (length as usize) < HEADER_BYTES || length as usize > FRAME_BYTES_MAX {
        return Err(FrameError::Length(length));
    }
    let kind = Kind::from_code(head[4]).ok_or(FrameError::Kind(head[4]))?;
    if head[5..8] != [0, 0, 0] {
        return Err(FrameError::Reserved);
    }
    let mut id = [0u8; 8];
    id.copy_from_slice(&head[8..16]);
    Ok(Some(Header {
        length,
        kind,
        request_id: u64::from_le_bytes(id),
    }))
}

/// Splits the first whole frame off `bytes`: its header and body, or
/// `Ok(None)` if the frame is not complete yet.
pub fn next_frame(bytes: &[u8]) -> Result<Option<(Header, &[u8])>, FrameError> {
    let Some(header) = decode_header(bytes)? else {
        return Ok(None);
    };
    Ok(bytes
        .get(HEADER_BYTES..header.length as usize)
        .map(|body| (header, body)))
}

/// Writes a header for a body of `body_bytes` into `out`.
pub fn push_header(out: &mut Vec<u8>, kind: Kind, request_id: u64, body_bytes: usize) {
    let length = u32::try_from(HEADER_BYTES + body_bytes).unwrap_or(u32::MAX);
    out.extend_from_slice(&length.to_le_bytes());
    out.push(kind as u8);
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(&request_id.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_bounds_hold() {
        let mut out = Vec::new();
        push_header(&mut out, Kind::Vote, 7, 4);
        out.extend_from_slice(&[1, 2, 3, 4]);
        let (header, body) = next_frame(&out).unwrap().unwrap();
        assert_eq!(header.kind, Kind::Vote);
        assert_eq!(header.request_id, 7);
        assert_eq!(body, &[1, 2, 3, 4]);
        assert_eq!(next_frame(&out[..19]).unwrap(), None);
        out[0] = 15;
        assert_eq!(next_frame(&out), Err(FrameError::Length(15)));
        out[0] = 20;
        out[4] = 0x55;
        assert_eq!(next_frame(&out), Err(FrameError::Kind(0x55)));
        out[4] = 0x10;
        out[6] = 1;
        assert_eq!(next_frame(&out), Err(FrameError::Reserved));
    }
}
