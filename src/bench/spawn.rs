//! `--spawn`: a local `x700 serve` from this very binary, on a fresh
//! temporary data directory and an ephemeral loopback port, stopped with
//! SIGTERM (and waited for) when the benchmark is done.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Longest wait for the node to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for the node to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the exit is checked while waiting.
const STOP_POLL: Duration = Duration::from_millis(20);

/// A running local node.
pub struct LocalNode {
    child: Option<Child>,
    /// Its TCP address.
    pub address: SocketAddr,
    /// Its data directory (removed when it stops).
    pub data: PathBuf,
}

impl LocalNode {
    /// Starts `x700 serve` with `extra` flags (such as `--shards 1`).
    pub fn start(extra: &[String]) -> Result<LocalNode, String> {
        let exe = std::env::current_exe().map_err(|e| format!("this program's path: {e}"))?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let data = std::env::temp_dir().join(format!("x700-bench-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&data).map_err(|e| format!("{}: {e}", data.display()))?;
        let mut child = Command::new(exe)
            .arg("serve")
            .arg("--data")
            .arg(&data)
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn x700 serve: {e}"))?;
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err("spawned node without pipes".into());
        };
        let (first_tx, first_rx) = mpsc::channel();
        // Drain both pipes for the node's whole life so it never blocks.
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut first = String::new();
            let _ = reader.read_line(&mut first);
            let _ = first_tx.send(first);
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
        let (error_tx, error_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = BufReader::new(stderr).read_to_string(&mut text);
            let _ = error_tx.send(text);
        });
        let mut node = LocalNode {
            child: Some(child),
            address: SocketAddr::from(([127, 0, 0, 1], 0)),
            data,
        };
        let first = first_rx.recv_timeout(START_TIMEOUT).unwrap_or_default();
        let address = first
            .split_whitespace()
            .find_map(|word| word.strip_prefix("tcp="))
            .and_then(|text| text.parse().ok());
        match address {
            Some(address) => {
                node.address = address;
                Ok(node)
            }
            None => {
                let _ = node.stop();
                let stderr = error_rx
                    .recv_timeout(Duration::from_secs(1))
                    .unwrap_or_default();
                Err(format!(
                    "the spawned node did not start: {:?} {}",
                    first.trim(),
                    stderr.trim()
                ))
            }
        }
    }

    /// Stops the node (SIGTERM, then waits; kills it if it hangs) and
    /// removes its data directory.
    pub fn stop(&mut self) -> Result<(), String> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        crate::sys::terminate(child.id());
        let deadline = Instant::now() + STOP_TIMEOUT;
        let outcome = loop {
            match child.try_wait() {
                Ok(Some(status)) if status.success() => break Ok(()),
                Ok(Some(status)) => break Err(format!("the spawned node exited with {status}")),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(STOP_POLL),
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break Err("the spawned node did not stop in time; killed".into());
                }
                Err(e) => break Err(format!("wait for the spawned node: {e}")),
            }
        };
        let _ = std::fs::remove_dir_all(&self.data);
        outcome
    }
}

impl Drop for LocalNode {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}
