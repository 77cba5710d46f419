//! Little-endian byte reading for the checkpoint decoders: every read is
//! bounds-checked, so a truncated or corrupt checkpoint is an error, never a
//! panic.

/// Why a checkpoint could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corrupt pool checkpoint: {0}")]
pub struct Corrupt(pub &'static str);

/// A cursor over checkpoint bytes.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Checks `magic`, the version and the CRC32C trailer over everything
    /// before it, and returns a reader over the body between them.
    pub(crate) fn open(bytes: &'a [u8], magic: &[u8; 4], version: u16) -> Result<Self, Corrupt> {
        if bytes.len() < 10 {
            return Err(Corrupt("shorter than its header"));
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        let crc = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
        if crc32c::crc32c(body) != crc {
            return Err(Corrupt("checksum mismatch"));
        }
        if &body[..4] != magic {
            return Err(Corrupt("wrong magic"));
        }
        if u16::from_le_bytes([body[4], body[5]]) != version {
            return Err(Corrupt("unknown version"));
        }
        Ok(Reader { bytes: &body[6..] })
    }

    /// The next `N` bytes.
    pub(crate) fn take<const N: usize>(&mut self) -> Result<[u8; N], Corrupt> {
        if self.bytes.len() < N {
            return Err(Corrupt("truncated"));
        }
        let (head, rest) = self.bytes.split_at(N);
        self.bytes = rest;
        let mut out = [0u8; N];
        out.copy_from_slice(head);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, Corrupt> {
        Ok(self.take::<1>()?[0])
    }

    pub(crate) fn u32(&mut self) -> Result<u32, Corrupt> {
        Ok(u32::from_le_bytes(self.take()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, Corrupt> {
        Ok(u64::from_le_bytes(self.take()?))
    }

    /// Bytes left; the decoders require zero at the end.
    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len()
    }
}

/// Writes the header every pool checkpoint opens with.
pub(crate) fn write_header(out: &mut Vec<u8>, magic: &[u8; 4], version: u16) -> usize {
    let start = out.len();
    out.extend_from_slice(magic);
    out.extend_from_slice(&version.to_le_bytes());
    start
}

/// Appends the CRC32C of everything written since `start`.
pub(crate) fn write_trailer(out: &mut Vec<u8>, start: usize) {
    let crc = crc32c::crc32c(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
}
