//! The admin HTTP endpoint: `/metrics` (Prometheus text format),
//! `/healthz` (the process is up) and `/readyz` (every event loop runs and
//! the node is not stopping). A small blocking server on its own thread: it
//! is scraped every few seconds, never on the request path.

use super::Shared;
use prometheus_client::registry::Registry;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Longest request head read.
const REQUEST_BYTES_MAX: usize = 4096;
/// Longest time one request may take to arrive.
const REQUEST_DEADLINE: Duration = Duration::from_millis(500);

/// Binds the address and serves until the node stops.
pub fn start(
    address: SocketAddr,
    shared: Arc<Shared>,
) -> std::io::Result<(JoinHandle<()>, SocketAddr)> {
    let listener = TcpListener::bind(address)?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    let mut registry = Registry::default();
    registry.register_collector(Box::new(shared.metrics.clone()));
    let handle = std::thread::Builder::new()
        .name("x700-admin".into())
        .spawn(move || serve(&listener, &shared, &registry))?;
    Ok((handle, bound))
}

fn serve(listener: &TcpListener, shared: &Shared, registry: &Registry) {
    while !shared.stopping.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                if let Err(error) = answer(stream, shared, registry) {
                    eprintln!("x700: admin: {error}");
                }
            }
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(error) => eprintln!("x700: admin accept: {error}"),
        }
    }
}

fn answer(mut stream: TcpStream, shared: &Shared, registry: &Registry) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut head = vec![0u8; REQUEST_BYTES_MAX];
    let mut filled = 0;
    // One deadline for the whole request head: a client trickling bytes
    // must not hold up scrapes, health checks or a stop.
    let deadline = std::time::Instant::now() + REQUEST_DEADLINE;
    while filled < head.len() && !head[..filled].windows(4).any(|w| w == b"\r\n\r\n") {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        stream.set_read_timeout(Some(left))?;
        let n = stream.read(&mut head[filled..])?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    let request = String::from_utf8_lossy(&head[..filled]);
    let path = request.split_whitespace().nth(1).unwrap_or("");
    let (code, content_type, body) = match path {
        "/metrics" => {
            let mut text = String::new();
            match prometheus_client::encoding::text::encode(&mut text, registry) {
                Ok(()) => (
                    "200 OK",
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    text,
                ),
                Err(_) => (
                    "500 Internal Server Error",
                    "text/plain",
                    "encoding failed\n".into(),
                ),
            }
        }
        "/healthz" => ("200 OK", "text/plain", "ok\n".into()),
        "/readyz"
            if shared.ready.load(Ordering::SeqCst) && !shared.stopping.load(Ordering::SeqCst) =>
        {
            ("200 OK", "text/plain", "ready\n".into())
        }
        "/readyz" => (
            "503 Service Unavailable",
            "text/plain",
            "not ready\n".into(),
        ),
        _ => ("404 Not Found", "text/plain", "not found\n".into()),
    };
    let response = format!(
        "HTTP/1.1 {code}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes())
}
