// The frame decoder check shared by the fuzz target (fuzz/fuzz_targets/
// frames.rs) and the corpus replay test (tests/frame_corpus.rs), both of
// which `include!` this file. Plain `//` comments only: an included file
// cannot carry inner doc comments.
//
// What it checks, for any bytes at all:
// - `next_frame` splits the bytes as a server's read loop would, with the
//   default request frame limit; every frame it returns is whole, at least a
//   header and at most the limit, and a length error names a length that
//   really is outside those bounds;
// - `decode_request` never panics on a frame's body;
// - every request it accepts, re-encoded with the codec's own encoders,
//   is a frame of the same opcode, request id and size that decodes to the
//   same value (the round trip a client and a server depend on).

/// The request frame limit the check splits with: the server's default.
const CHECK_FRAME_BYTES_MAX: u32 = x700::protocol::limits::REQUEST_FRAME_BYTES_DEFAULT;

/// How a byte string ended once split into frames.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[allow(dead_code)] // Read by the corpus test, not by the fuzz target.
enum FramesEnd {
    /// Every byte belonged to a complete frame.
    Clean,
    /// A partial frame was left, waiting for more bytes.
    Partial,
    /// A length field outside 12..=limit: a server closes the connection.
    Closed,
}

/// What the check saw, so the corpus test can tell which paths a corpus
/// exercises.
#[derive(Clone, Debug)]
#[allow(dead_code)] // Read by the corpus test, not by the fuzz target.
struct FramesSeen {
    /// Opcodes of the frames `decode_request` accepted, in order.
    accepted: Vec<u8>,
    /// (opcode, answer status) of the frames it refused, in order.
    refused: Vec<(u8, u8)>,
    /// How the bytes ended.
    end: FramesEnd,
}

/// Splits `bytes` into frames, decodes each and round-trips every accepted
/// request. Panics (with the offending frame in hex) if anything is wrong.
fn check_frames(bytes: &[u8]) -> FramesSeen {
    use x700::protocol::codec::decode_request;
    use x700::protocol::frame::{next_frame, FrameError, HEADER_BYTES};

    let mut seen = FramesSeen {
        accepted: Vec::new(),
        refused: Vec::new(),
        end: FramesEnd::Clean,
    };
    let mut rest = bytes;
    while !rest.is_empty() {
        match next_frame(rest, CHECK_FRAME_BYTES_MAX) {
            Ok(Some((header, frame))) => {
                assert_eq!(frame.len(), header.length as usize, "frame is not whole");
                assert!(
                    (HEADER_BYTES..=CHECK_FRAME_BYTES_MAX as usize).contains(&frame.len()),
                    "frame of {} bytes passed the length check",
                    frame.len()
                );
                match decode_request(&header, &frame[HEADER_BYTES..]) {
                    Ok(request) => {
                        check_round_trip(frame, &header, &request);
                        seen.accepted.push(header.opcode);
                    }
                    Err(error) => seen.refused.push((header.opcode, error.status)),
                }
                rest = &rest[frame.len()..];
            }
            Ok(None) => {
                seen.end = FramesEnd::Partial;
                break;
            }
            Err(FrameError::Length { length, min, max }) => {
                assert!(
                    length < min || length > max,
                    "length {length} refused though inside {min}..={max}"
                );
                assert_eq!((min, max), (HEADER_BYTES as u32, CHECK_FRAME_BYTES_MAX));
                seen.end = FramesEnd::Closed;
                break;
            }
        }
    }
    seen
}

/// Re-encodes an accepted request with the client-side encoders and checks
/// that the new frame decodes to the same request.
fn check_round_trip(
    frame: &[u8],
    header: &x700::protocol::Header,
    request: &x700::protocol::Request<'_>,
) {
    use x700::protocol::codec::{
        decode_request, encode_bind, encode_hello, encode_lookup, encode_query, encode_unbind,
        encode_update, encode_wait_index,
    };
    use x700::protocol::frame::{next_frame, push_frame, HEADER_BYTES};
    use x700::protocol::{limits, opcode, Request, Role};

    let id = header.request_id;
    let mut out = Vec::new();
    match *request {
        Request::Lookup { query, voice } => encode_lookup(&mut out, id, &query, voice),
        Request::Bind(bind) => encode_bind(&mut out, id, &bind),
        Request::Update(update) => encode_update(&mut out, id, update.binding_id, &update.update),
        Request::Unbind(unbind) => encode_unbind(&mut out, id, &unbind),
        Request::Query(query) => encode_query(&mut out, id, query.binding_id),
        Request::Ping => push_frame(&mut out, opcode::PING, 0, id, &[]),
        Request::Stats => push_frame(&mut out, opcode::STATS, 0, id, &[]),
        Request::ClusterStatus => push_frame(&mut out, opcode::CLUSTER_STATUS, 0, id, &[]),
        Request::ClusterInit(text) => {
            push_frame(&mut out, opcode::CLUSTER_INIT, 0, id, text.as_bytes());
        }
        Request::ClusterAddNode(text) => {
            push_frame(&mut out, opcode::CLUSTER_ADD_NODE, 0, id, text.as_bytes());
        }
        Request::ClusterRemoveNode(node_id) => {
            push_frame(
                &mut out,
                opcode::CLUSTER_REMOVE_NODE,
                0,
                id,
                &node_id.to_le_bytes(),
            );
        }
        Request::ClusterVerify => push_frame(&mut out, opcode::CLUSTER_VERIFY, 0, id, &[]),
        Request::Control(control) => {
            let mut body = Vec::new();
            x700::protocol::codec::control::encode(&control, &mut body);
            push_frame(
                &mut out,
                x700::protocol::codec::control::opcode_of(&control),
                0,
                id,
                &body,
            );
        }
        Request::Trace(trace) => {
            let mut body = Vec::new();
            let op = x700::protocol::codec::control::encode_trace(&trace, &mut body);
            push_frame(&mut out, op, 0, id, &body);
        }
        Request::PoolShow(tenant) => {
            push_frame(&mut out, opcode::POOL_SHOW, 0, id, &tenant.to_le_bytes());
        }
        Request::BindAuto(auto) => x700::protocol::codec::auto::encode_auto_bind(&mut out, id, &auto),
        Request::TenantShow(tenant) => {
            let tenant = tenant.unwrap_or(x700::protocol::codec::control::ALL);
            push_frame(&mut out, opcode::TENANT_SHOW, 0, id, &tenant.to_le_bytes());
        }
        Request::WaitIndex { index, timeout_ms } => {
            encode_wait_index(&mut out, id, index, timeout_ms);
        }
        Request::Hello {
            version,
            role,
            credential,
        } => match Role::from_code(role) {
            // The encoder takes a valid role and at most 64 credential bytes;
            // the decoder leaves both to the session layer to judge.
            Some(role) if credential.len() <= limits::CREDENTIAL_BYTES_MAX => {
                encode_hello(&mut out, id, version, role, credential);
            }
            _ => return,
        },
    }
    let again = match next_frame(&out, u32::MAX) {
        Ok(Some((again, bytes))) if bytes.len() == out.len() => again,
        other => panic!(
            "re-encoded {request:?} is not one frame: {other:?}\n original: {}\n encoded:  {}",
            hex_bytes(frame),
            hex_bytes(&out)
        ),
    };
    assert_eq!(
        (again.opcode, again.status, again.request_id, out.len()),
        (header.opcode, 0, id, frame.len()),
        "re-encoded header differs\n original: {}\n encoded:  {}",
        hex_bytes(frame),
        hex_bytes(&out)
    );
    let decoded = decode_request(&again, &out[HEADER_BYTES..]);
    assert_eq!(
        decoded.as_ref(),
        Ok(request),
        "round trip changed the request\n original: {}\n encoded:  {}",
        hex_bytes(frame),
        hex_bytes(&out)
    );
}

/// Bytes as spaced lower-case hex, for failure messages.
fn hex_bytes(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}
