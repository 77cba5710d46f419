//! Proves that the client library opens a session with a node of an older
//! protocol version: asked for version 2, a version 1 node answers
//! `UNSUPPORTED_VERSION` with its range and closes; the client connects
//! again and says HELLO with version 1, once. A node whose range it cannot
//! meet is refused `unsupported_version`.

use std::io::{Read, Write};
use std::net::TcpListener;
use x700::client::{Client, ClientError};
use x700::protocol::codec::hello_answer_body;
use x700::protocol::frame::{next_frame, push_frame, HEADER_BYTES};
use x700::protocol::{opcode, status, Role};

/// Serves `connections` HELLOs like a node speaking versions `min..=max`;
/// returns the versions it was asked for.
fn old_node(min: u16, max: u16, connections: usize) -> (String, std::thread::JoinHandle<Vec<u16>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    let handle = std::thread::spawn(move || {
        let mut asked = Vec::new();
        for _ in 0..connections {
            let (mut stream, _) = listener.accept().expect("accept");
            let mut input = Vec::new();
            let mut chunk = [0u8; 256];
            let (header, body) = loop {
                if let Ok(Some((header, frame))) = next_frame(&input, 1024) {
                    break (header, frame[HEADER_BYTES..].to_vec());
                }
                let n = stream.read(&mut chunk).expect("read");
                assert!(n > 0, "closed before HELLO");
                input.extend_from_slice(&chunk[..n]);
            };
            assert_eq!(header.opcode, opcode::HELLO);
            let version = u16::from_le_bytes([body[0], body[1]]);
            asked.push(version);
            let mut out = Vec::new();
            if (min..=max).contains(&version) {
                push_frame(
                    &mut out,
                    opcode::HELLO,
                    status::OK,
                    header.request_id,
                    &hello_answer_body(version, 1, 1, 0),
                );
            } else {
                let mut range = min.to_le_bytes().to_vec();
                range.extend_from_slice(&max.to_le_bytes());
                push_frame(
                    &mut out,
                    opcode::HELLO,
                    status::UNSUPPORTED_VERSION,
                    header.request_id,
                    &range,
                );
            }
            stream.write_all(&out).expect("answer");
        }
        asked
    });
    (address, handle)
}

#[test]
fn a_version_1_node_gets_a_version_1_session() {
    let (address, node) = old_node(1, 1, 2);
    let client = Client::connect(address.as_str(), Role::Switch, "").expect("a session");
    assert_eq!(client.node.version, 1);
    assert_eq!(node.join().expect("node"), vec![2, 1]);
}

#[test]
fn a_node_whose_range_cannot_be_met_is_refused() {
    let (address, node) = old_node(3, 4, 1);
    match Client::connect(address.as_str(), Role::Switch, "") {
        Err(ClientError::Refused(code)) => assert_eq!(code, status::UNSUPPORTED_VERSION),
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("a session with a node of versions 3-4"),
    }
    assert_eq!(node.join().expect("node"), vec![2]);
}
