//! `x700 decode CAPTURE`: the x700 frames of a packet capture, one line
//! each, in capture order: time, connection, direction, opcode, status
//! (answers), request id and the numbers the frame carries, as digits.
//! With `--json`, one JSON object per frame and a last `{"summary": ...}`
//! line. Reading is `crate::capture`; this file only prints.

use super::args::DecodeArgs;
use crate::binding::LookupResult;
use crate::capture::{self, Capture, Connection, Frame, Options};
use crate::number::Number;
use crate::protocol::codec::{decode_bind_answer, decode_binding, decode_lookup_answer};
use crate::protocol::codec::{decode_request, Request, UnbindBody};
use crate::protocol::{opcode, status, HEADER_BYTES};
use serde_json::{json, Map, Value};
use std::fs::File;
use std::io::{BufReader, Write};

/// The name of an opcode, as printed.
pub fn opcode_name(code: u8) -> &'static str {
    match code {
        opcode::HELLO => "hello",
        opcode::PING => "ping",
        opcode::STATS => "stats",
        opcode::LOOKUP => "lookup",
        opcode::WAIT_INDEX => "wait_index",
        opcode::BIND_AXB => "bind_axb",
        opcode::BIND_AXN => "bind_axn",
        opcode::BIND_AXE => "bind_axe",
        opcode::UPDATE => "update",
        opcode::UNBIND => "unbind",
        opcode::QUERY => "query",
        opcode::CLUSTER_STATUS => "cluster_status",
        opcode::CLUSTER_INIT => "cluster_init",
        opcode::CLUSTER_ADD_NODE => "cluster_add_node",
        opcode::CLUSTER_REMOVE_NODE => "cluster_remove_node",
        opcode::CLUSTER_VERIFY => "cluster_verify",
        _ => "unknown_opcode",
    }
}

/// Runs `x700 decode`; returns the exit code: 0 when the whole capture was
/// read, 1 when it could not be opened or stopped at a bad packet (the
/// frames before it are printed all the same).
pub fn decode(args: &DecodeArgs) -> i32 {
    let file = match File::open(&args.capture) {
        Ok(file) => file,
        Err(error) => {
            eprintln!("x700 decode: {}: {error}", args.capture.display());
            return 1;
        }
    };
    let options = Options {
        server_port: args.port,
    };
    let capture = capture::read_capture(BufReader::new(file), &options);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for (connection_index, connection, is_request, frame) in capture_order(&capture) {
        let line = frame_object(connection_index, connection, is_request, frame);
        let written = if args.json {
            writeln!(out, "{}", Value::Object(line))
        } else {
            writeln!(out, "{}", text_line(&line))
        };
        if written.is_err() {
            // The reader went away (a pipe into `head`): nothing to add.
            return 0;
        }
    }
    let summary = summary_object(&capture);
    if args.json {
        let _ = writeln!(out, "{}", json!({ "summary": summary }));
    } else {
        eprintln!("{}", text_line(&summary));
    }
    if let Some(error) = &capture.error {
        eprintln!("x700 decode: {}: {error}", args.capture.display());
        return 1;
    }
    0
}

/// Every frame of the capture, ordered by capture time (frames of equal
/// time keep their connection's order).
fn capture_order(capture: &Capture) -> Vec<(usize, &Connection, bool, &Frame)> {
    let mut frames = Vec::new();
    for (index, connection) in capture.connections.iter().enumerate() {
        for frame in &connection.requests {
            frames.push((index, connection, true, frame));
        }
        for frame in &connection.answers {
            frames.push((index, connection, false, frame));
        }
    }
    frames.sort_by_key(|&(index, _, _, frame)| (frame.time_ns, index));
    frames
}

fn frame_object(
    index: usize,
    connection: &Connection,
    is_request: bool,
    frame: &Frame,
) -> Map<String, Value> {
    let (source, destination) = if is_request {
        (connection.client, connection.server)
    } else {
        (connection.server, connection.client)
    };
    let mut line = Map::new();
    line.insert("time".into(), json!(time_text(frame.time_ns)));
    line.insert("connection".into(), json!(index));
    line.insert("protocol".into(), json!(connection.protocol.as_str()));
    line.insert("source".into(), json!(source.to_string()));
    line.insert("destination".into(), json!(destination.to_string()));
    line.insert(
        "direction".into(),
        json!(if is_request { "request" } else { "answer" }),
    );
    line.insert("opcode".into(), json!(opcode_name(frame.header.opcode)));
    if !is_request {
        line.insert("status".into(), json!(status::name(frame.header.status)));
    }
    line.insert("request_id".into(), json!(frame.header.request_id));
    let body = frame.bytes.get(HEADER_BYTES..).unwrap_or_default();
    if is_request {
        request_fields(frame, body, &mut line);
    } else {
        answer_fields(frame, body, &mut line);
    }
    line.insert("paired".into(), json!(frame.pair.is_some()));
    line
}

fn number(line: &mut Map<String, Value>, key: &str, number: Number) {
    if !number.is_none() {
        line.insert(key.into(), json!(number.digits()));
    }
}

fn request_fields(frame: &Frame, body: &[u8], line: &mut Map<String, Value>) {
    match decode_request(&frame.header, body) {
        Ok(Request::Lookup { query, voice }) => {
            number(line, "caller", query.caller);
            number(line, "x", query.x);
            number(line, "extension", query.extension);
            line.insert("kind".into(), json!(if voice { "voice" } else { "sms" }));
        }
        Ok(Request::Bind(bind)) => {
            number(line, "x", bind.x);
            number(line, "a", bind.a);
            let key = if frame.header.opcode == opcode::BIND_AXE {
                "extension"
            } else {
                "b"
            };
            number(line, key, bind.b);
            line.insert("tenant".into(), json!(bind.tenant));
            line.insert("ttl_s".into(), json!(bind.ttl_s));
        }
        Ok(Request::Update(update)) => {
            line.insert("binding_id".into(), json!(update.binding_id.0));
        }
        Ok(Request::Unbind(UnbindBody::Id(id))) => {
            line.insert("binding_id".into(), json!(id.0));
        }
        Ok(Request::Unbind(UnbindBody::Party { x, party })) => {
            number(line, "x", x);
            number(line, "party", party);
        }
        Ok(Request::Query(query)) => {
            line.insert("binding_id".into(), json!(query.binding_id.0));
        }
        Ok(Request::Hello { version, role, .. }) => {
            line.insert("version".into(), json!(version));
            line.insert("role".into(), json!(role));
        }
        Ok(_) => {}
        Err(error) => {
            line.insert("malformed".into(), json!(error.reason));
        }
    }
}

fn answer_fields(frame: &Frame, body: &[u8], line: &mut Map<String, Value>) {
    let ok = frame.header.status == status::OK;
    match frame.header.opcode {
        opcode::LOOKUP => {
            if let Ok(LookupResult::Route(route)) = decode_lookup_answer(&frame.header, body) {
                number(line, "callee", route.callee);
                number(line, "display", route.display);
                line.insert("binding_id".into(), json!(route.binding_id.0));
            }
        }
        opcode::BIND_AXB | opcode::BIND_AXN | opcode::BIND_AXE if ok => {
            if let Some((id, _, _)) = decode_bind_answer(body) {
                line.insert("binding_id".into(), json!(id.0));
            }
        }
        opcode::UPDATE | opcode::UNBIND | opcode::QUERY if ok => {
            if let Some(binding) = decode_binding(body) {
                line.insert("binding_id".into(), json!(binding.id.0));
                number(line, "x", binding.x);
                number(line, "a", binding.parties.a());
            }
        }
        _ => {}
    }
}

fn summary_object(capture: &Capture) -> Map<String, Value> {
    let summary = &capture.summary;
    let mut object = Map::new();
    object.insert("packets".into(), json!(summary.packets));
    object.insert("connections".into(), json!(capture.connections.len()));
    let (requests, answers) = capture.connections.iter().fold((0, 0), |(r, a), c| {
        (r + c.requests.len(), a + c.answers.len())
    });
    object.insert("requests".into(), json!(requests));
    object.insert("answers".into(), json!(answers));
    object.insert("skipped_link_type".into(), json!(summary.skipped_link_type));
    object.insert("skipped_protocol".into(), json!(summary.skipped_protocol));
    object.insert("skipped_malformed".into(), json!(summary.skipped_malformed));
    object.insert("repeated_bytes".into(), json!(summary.repeated_bytes));
    object.insert("gaps".into(), json!(summary.gaps));
    object.insert("resyncs".into(), json!(summary.resyncs));
    object.insert("unframed_bytes".into(), json!(summary.unframed_bytes));
    if let Some(error) = &capture.error {
        object.insert("error_packet".into(), json!(error.packet));
        object.insert("error".into(), json!(error.reason));
    }
    object
}

/// Seconds since the Unix epoch, to the nanosecond.
fn time_text(time_ns: u64) -> String {
    format!("{}.{:09}", time_ns / 1_000_000_000, time_ns % 1_000_000_000)
}

/// `key=value` pairs, strings bare; time, connection and direction first
/// as the object holds them.
fn text_line(object: &Map<String, Value>) -> String {
    let mut line = String::new();
    for (key, value) in object {
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(key);
        line.push('=');
        match value {
            Value::String(text) => line.push_str(text),
            other => line.push_str(&other.to_string()),
        }
    }
    line
}
