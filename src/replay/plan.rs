//! Which captured requests a replay sends, on which connection and at what
//! offset from the start: pure functions over a read `Capture`.

use crate::capture::{Capture, Protocol};
use crate::protocol::codec::{decode_request, Request as DecodedRequest};
use crate::protocol::{opcode, Role, HEADER_BYTES, VERSION};

/// Which requests to replay; empty lists keep everything.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Opcodes to keep.
    pub opcodes: Vec<u8>,
    /// Captured connection numbers to keep (as `x700 decode` prints them).
    pub connections: Vec<usize>,
}

impl Filter {
    fn keeps_opcode(&self, code: u8) -> bool {
        self.opcodes.is_empty() || self.opcodes.contains(&code)
    }

    fn keeps_connection(&self, connection: usize) -> bool {
        self.connections.is_empty() || self.connections.contains(&connection)
    }
}

/// The HELLO a replayed connection opens with (the credential is the
/// replay's own).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Hello {
    /// Request id of the captured HELLO (0 when there was none).
    pub request_id: u32,
    /// Protocol version asked for.
    pub version: u16,
    /// Role claimed.
    pub role: Role,
}

/// One request to send again.
#[derive(Clone, Debug)]
pub struct PlannedRequest {
    /// When it was sent, nanoseconds after the first replayed request.
    pub offset_ns: u64,
    /// Its header's request id.
    pub request_id: u32,
    /// Its opcode.
    pub opcode: u8,
    /// The whole frame, as captured.
    pub bytes: Vec<u8>,
    /// The captured answer's whole frame, if the capture holds it.
    pub captured_answer: Option<Vec<u8>>,
}

/// One captured connection to open again (a UDP one: the datagrams
/// between one client address and the server).
#[derive(Clone, Debug)]
pub struct ConnectionPlan {
    /// Its captured connection number.
    pub connection: usize,
    /// TCP or UDP.
    pub protocol: Protocol,
    /// The HELLO to open with.
    pub hello: Hello,
    /// Its requests, in captured order.
    pub requests: Vec<PlannedRequest>,
}

/// Everything a replay sends.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// The connections with at least one request to send.
    pub connections: Vec<ConnectionPlan>,
}

impl Plan {
    /// Requests to send, over all connections.
    pub fn requests(&self) -> u64 {
        self.connections
            .iter()
            .map(|connection| connection.requests.len() as u64)
            .sum()
    }
}

/// The HELLO a connection is replayed with: the captured one's version and
/// role, else version 1 as admin.
fn hello_of(requests: &[crate::capture::Frame]) -> Hello {
    let captured = requests
        .iter()
        .filter(|frame| frame.header.opcode == opcode::HELLO)
        .find_map(|frame| {
            let body = frame.bytes.get(HEADER_BYTES..)?;
            match decode_request(&frame.header, body) {
                Ok(DecodedRequest::Hello { version, role, .. }) => Some(Hello {
                    request_id: frame.header.request_id,
                    version,
                    role: Role::from_code(role).unwrap_or(Role::Admin),
                }),
                _ => None,
            }
        });
    captured.unwrap_or(Hello {
        request_id: 0,
        version: VERSION,
        role: Role::Admin,
    })
}

/// The requests of `capture` the filter keeps, per connection, timed from
/// the first of them. HELLOs are not requests here: each TCP connection
/// sends its own first.
pub fn plan(capture: &Capture, filter: &Filter) -> Plan {
    let mut result = Plan::default();
    let kept = |code: u8| code != opcode::HELLO && filter.keeps_opcode(code);
    let start_ns = capture
        .connections
        .iter()
        .enumerate()
        .filter(|(index, _)| filter.keeps_connection(*index))
        .flat_map(|(_, c)| c.requests.iter())
        .filter(|frame| kept(frame.header.opcode))
        .map(|frame| frame.time_ns)
        .min()
        .unwrap_or(0);
    for (index, connection) in capture.connections.iter().enumerate() {
        if !filter.keeps_connection(index) {
            continue;
        }
        let requests: Vec<PlannedRequest> = connection
            .requests
            .iter()
            .filter(|frame| kept(frame.header.opcode))
            .map(|frame| PlannedRequest {
                offset_ns: frame.time_ns.saturating_sub(start_ns),
                request_id: frame.header.request_id,
                opcode: frame.header.opcode,
                bytes: frame.bytes.clone(),
                captured_answer: frame
                    .pair
                    .and_then(|answer| connection.answers.get(answer))
                    .map(|answer| answer.bytes.clone()),
            })
            .collect();
        if requests.is_empty() {
            continue;
        }
        result.connections.push(ConnectionPlan {
            connection: index,
            protocol: connection.protocol,
            hello: hello_of(&connection.requests),
            requests,
        });
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::{Connection, Frame, ServerChosenBy};
    use crate::protocol::codec::encode_hello;
    use crate::protocol::frame::Header;
    use crate::protocol::push_frame;

    fn frame(time_ns: u64, bytes: Vec<u8>, pair: Option<usize>) -> Frame {
        let header = Header::read(bytes.first_chunk().expect("a whole header"));
        Frame {
            time_ns,
            header,
            bytes,
            pair,
        }
    }

    fn request(time_ns: u64, code: u8, request_id: u32, pair: Option<usize>) -> Frame {
        let mut bytes = Vec::new();
        push_frame(&mut bytes, code, 0, request_id, &[]);
        frame(time_ns, bytes, pair)
    }

    fn connection(protocol: Protocol, requests: Vec<Frame>, answers: Vec<Frame>) -> Connection {
        Connection {
            protocol,
            client: "127.0.0.1:40000".parse().expect("address"),
            server: "127.0.0.1:7700".parse().expect("address"),
            server_chosen_by: ServerChosenBy::Port,
            first_packet: 1,
            from_start: true,
            gaps: 0,
            requests,
            answers,
        }
    }

    fn capture() -> Capture {
        let mut hello = Vec::new();
        encode_hello(&mut hello, 1, 1, Role::Switch, b"old-secret");
        let mut answer = Vec::new();
        push_frame(&mut answer, opcode::LOOKUP, 1, 2, &[]);
        Capture {
            connections: vec![
                connection(
                    Protocol::Tcp,
                    vec![
                        frame(1_000, hello, None),
                        request(2_000, opcode::LOOKUP, 2, Some(0)),
                        request(5_000, opcode::PING, 3, None),
                    ],
                    vec![frame(2_500, answer, Some(1))],
                ),
                connection(
                    Protocol::Tcp,
                    vec![request(1_500, opcode::BIND_AXB, 7, None)],
                    vec![],
                ),
                connection(
                    Protocol::Udp,
                    vec![request(3_000, opcode::LOOKUP, 9, None)],
                    vec![],
                ),
            ],
            ..Capture::default()
        }
    }

    #[test]
    fn every_request_but_hellos_is_planned_timed_from_the_first() {
        let plan = plan(&capture(), &Filter::default());
        assert_eq!(plan.connections.len(), 3);
        assert_eq!(plan.connections[2].protocol, Protocol::Udp);
        let first = &plan.connections[0];
        assert_eq!(first.connection, 0);
        assert_eq!(
            first.hello,
            Hello {
                request_id: 1,
                version: 1,
                role: Role::Switch
            }
        );
        let offsets: Vec<u64> = first.requests.iter().map(|r| r.offset_ns).collect();
        assert_eq!(offsets, [500, 3_500]);
        assert_eq!(
            first.requests[0]
                .captured_answer
                .as_deref()
                .map(<[u8]>::len),
            Some(12)
        );
        assert_eq!(first.requests[1].captured_answer, None);
        // No HELLO captured: admin, version 1.
        assert_eq!(plan.connections[1].hello.role, Role::Admin);
        assert_eq!(plan.connections[1].requests[0].offset_ns, 0);
        assert_eq!(plan.requests(), 4);
    }

    #[test]
    fn filters_keep_opcodes_and_connections() {
        let lookups = Filter {
            opcodes: vec![opcode::LOOKUP],
            connections: vec![],
        };
        let plan_lookups = plan(&capture(), &lookups);
        assert_eq!(plan_lookups.connections.len(), 2);
        assert_eq!(plan_lookups.connections[0].requests[0].offset_ns, 0);
        assert_eq!(plan_lookups.connections[1].requests[0].offset_ns, 1_000);
        let second = Filter {
            opcodes: vec![],
            connections: vec![1],
        };
        let plan_second = plan(&capture(), &second);
        assert_eq!(plan_second.connections.len(), 1);
        assert_eq!(plan_second.connections[0].connection, 1);
    }
}
