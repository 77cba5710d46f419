//! The protocol a bench phase speaks, and opening a connection: TCP, then
//! for x700 the HELLO, before the clock starts.

use super::redis::RedisCodec;
use super::workload::{Op, DIRECTION, TENANT};
use crate::protocol::codec::{self, BindBody, UnbindBody};
use crate::protocol::frame::next_frame;
use crate::protocol::{limits, status, Role, VERSION_MIN};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Longest wait for a connection and its HELLO.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The protocol a phase speaks.
#[derive(Clone, Copy, Debug)]
pub enum Wire {
    /// x700's binary protocol, with this HELLO role.
    X700 {
        /// Role for HELLO.
        role: Role,
        /// Lifetime of bound bindings.
        ttl_s: u32,
    },
    /// RESP, in a layout.
    Redis(RedisCodec),
}

/// Opens a connection and, for x700, says HELLO (blocking, before the
/// clock starts).
pub fn connect(address: SocketAddr, wire: &Wire, token: &str) -> Result<TcpStream, String> {
    let mut stream = TcpStream::connect_timeout(&address, CONNECT_TIMEOUT)
        .map_err(|e| format!("connect {address}: {e}"))?;
    stream
        .set_nodelay(true)
        .map_err(|e| format!("nodelay: {e}"))?;
    if let Wire::X700 { role, .. } = wire {
        stream
            .set_read_timeout(Some(CONNECT_TIMEOUT))
            .map_err(|e| e.to_string())?;
        let mut hello = Vec::new();
        // The bench speaks only version 1's requests: asking for version 1
        // lets it measure nodes of every version side by side.
        codec::encode_hello(&mut hello, 0, VERSION_MIN, *role, token.as_bytes());
        stream
            .write_all(&hello)
            .map_err(|e| format!("HELLO: {e}"))?;
        let mut answer = Vec::new();
        let mut chunk = [0u8; 256];
        let header = loop {
            if let Some((header, _)) =
                next_frame(&answer, limits::ANSWER_FRAME_BYTES_MAX).map_err(|e| e.to_string())?
            {
                break header;
            }
            let n = stream
                .read(&mut chunk)
                .map_err(|e| format!("HELLO answer: {e}"))?;
            if n == 0 {
                return Err("the node closed the connection after HELLO".into());
            }
            answer.extend_from_slice(&chunk[..n]);
        };
        if header.status != status::OK {
            return Err(format!(
                "HELLO refused: {} (role {}; give --token or --role)",
                status::name(header.status),
                role.as_str()
            ));
        }
        if answer.len() > header.length as usize {
            return Err("the node answered before it was asked".into());
        }
    }
    stream
        .set_nonblocking(true)
        .map_err(|e| format!("nonblocking: {e}"))?;
    Ok(stream)
}

/// Appends the request for `op`.
#[inline]
pub(super) fn encode(wire: &Wire, op: &Op, request_id: u32, now_s: u32, out: &mut Vec<u8>) {
    match wire {
        Wire::Redis(redis) => redis.encode(op, now_s, out),
        Wire::X700 { ttl_s, .. } => match op {
            Op::Lookup { query, .. } => codec::encode_lookup(out, request_id, query, true),
            Op::Bind(binding) => codec::encode_bind(
                out,
                request_id,
                &BindBody {
                    mode: binding.mode,
                    x: binding.x,
                    a: binding.a,
                    b: binding.b,
                    tenant: TENANT,
                    ttl_s: *ttl_s,
                    direction: DIRECTION,
                    recording: false,
                    order: binding.order(),
                },
            ),
            Op::Unbind(binding) => {
                let party = if binding.mode == crate::binding::Mode::Axe {
                    binding.b
                } else {
                    binding.a
                };
                codec::encode_unbind(
                    out,
                    request_id,
                    &UnbindBody::Party {
                        x: binding.x,
                        party,
                    },
                );
            }
        },
    }
}
