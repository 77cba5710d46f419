//! The 12-byte frame header and the splitting of a byte stream into frames.
//!
//! ```text
//! offset size field
//!  0     4    length      whole frame in bytes, header included (LE)
//!  4     1    opcode      request: the operation; answer: the same opcode
//!  5     1    status      request: 0; answer: the status code
//!  6     2    reserved    0
//!  8     4    request_id  chosen by the client, echoed in the answer
//! ```

/// Bytes in a frame header.
pub const HEADER_BYTES: usize = 12;

/// A decoded frame header.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Header {
    /// Whole frame length.
    pub length: u32,
    /// Operation.
    pub opcode: u8,
    /// Status (answers) or 0 (requests).
    pub status: u8,
    /// Client's request id.
    pub request_id: u32,
}

/// Why a byte stream cannot be framed.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
pub enum FrameError {
    /// The length field is below the header size or above the limit: the
    /// stream's framing cannot be trusted and the connection must close.
    #[error("frame length {length} outside {min}..={max}")]
    Length {
        /// The length field.
        length: u32,
        /// Smallest valid.
        min: u32,
        /// Largest accepted.
        max: u32,
    },
}

impl Header {
    /// Reads a header from the first 12 bytes (caller checks the length).
    #[inline(always)]
    pub fn read(bytes: &[u8; HEADER_BYTES]) -> Header {
        Header {
            length: u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
            opcode: bytes[4],
            status: bytes[5],
            request_id: u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]),
        }
    }

    /// Writes the header into the first 12 bytes of `out`.
    #[inline(always)]
    pub fn write(&self, out: &mut [u8; HEADER_BYTES]) {
        out[0..4].copy_from_slice(&self.length.to_le_bytes());
        out[4] = self.opcode;
        out[5] = self.status;
        out[6..8].copy_from_slice(&[0, 0]);
        out[8..12].copy_from_slice(&self.request_id.to_le_bytes());
    }
}

/// Takes the next complete frame from the front of `buffer`.
///
/// Returns `Ok(Some((header, frame_bytes)))` with the whole frame,
/// `Ok(None)` if more bytes are needed, or an error if the length field is
/// impossible (then nothing after it can be trusted).
#[inline]
pub fn next_frame(
    buffer: &[u8],
    frame_bytes_max: u32,
) -> Result<Option<(Header, &[u8])>, FrameError> {
    let Some(head) = buffer.first_chunk::<HEADER_BYTES>() else {
        // Even a partial length can be judged once it is all here.
        if let Some(length) = buffer.first_chunk::<4>() {
            check_length(u32::from_le_bytes(*length), frame_bytes_max)?;
        }
        return Ok(None);
    };
    let header = Header::read(head);
    check_length(header.length, frame_bytes_max)?;
    let length = header.length as usize;
    if buffer.len() < length {
        return Ok(None);
    }
    Ok(Some((header, &buffer[..length])))
}

fn check_length(length: u32, max: u32) -> Result<(), FrameError> {
    if length < HEADER_BYTES as u32 || length > max {
        return Err(FrameError::Length {
            length,
            min: HEADER_BYTES as u32,
            max,
        });
    }
    Ok(())
}

/// Appends a frame (header and body) to `out`.
#[inline]
pub fn push_frame(out: &mut Vec<u8>, opcode: u8, status: u8, request_id: u32, body: &[u8]) {
    let length = u32::try_from(HEADER_BYTES + body.len()).unwrap_or(u32::MAX);
    let mut head = [0u8; HEADER_BYTES];
    Header {
        length,
        opcode,
        status,
        request_id,
    }
    .write(&mut head);
    out.extend_from_slice(&head);
    out.extend_from_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_split() {
        let mut stream = Vec::new();
        push_frame(&mut stream, 0x10, 0, 7, &[1, 2, 3]);
        push_frame(&mut stream, 0x02, 0, 8, &[]);
        let (first, bytes) = next_frame(&stream, 1024).unwrap().unwrap();
        assert_eq!(
            (first.opcode, first.request_id, first.length),
            (0x10, 7, 15)
        );
        assert_eq!(&bytes[12..], &[1, 2, 3]);
        let (second, _) = next_frame(&stream[15..], 1024).unwrap().unwrap();
        assert_eq!((second.opcode, second.request_id), (0x02, 8));
        assert_eq!(next_frame(&stream[..14], 1024), Ok(None));
    }

    #[test]
    fn untrustworthy_lengths_are_errors() {
        assert!(next_frame(&[5, 0, 0, 0], 1024).is_err());
        assert!(next_frame(&[0xFF, 0xFF, 0xFF, 0x7F, 0x10], 1024).is_err());
        let mut big = Vec::new();
        push_frame(&mut big, 0x10, 0, 1, &[0; 2000]);
        assert!(next_frame(&big, 1024).is_err());
        assert_eq!(next_frame(&[], 1024), Ok(None));
    }
}
