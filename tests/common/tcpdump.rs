//! tcpdump recording a node's loopback traffic to a file, for the tests
//! that decode, dissect or replay a real capture: installed with apt-get
//! when missing, started on `lo` and known to be capturing once a knock (a
//! connection opened and closed, no frame in it) is in the file, stopped
//! with SIGTERM so that it writes what it holds.

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A pcap file's header: what tcpdump writes before any packet.
const PCAP_HEADER_BYTES: u64 = 24;
/// Longest wait for tcpdump to capture its first knock, and to exit.
const WAIT: Duration = Duration::from_secs(15);
/// How long the last packets get to reach the file before tcpdump stops.
const SETTLE: Duration = Duration::from_millis(500);

/// True when `program` runs.
fn runs(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

fn apt_get(args: &[&str]) -> bool {
    Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Makes sure `programs` (Debian packages of the same names: tcpdump,
/// tshark) run, installing the missing ones with apt-get. False, with the
/// reason printed, if they cannot be (tools/test.sh installs them in CI).
pub fn tools_ready(programs: &[&str]) -> bool {
    let missing: Vec<&str> = programs.iter().copied().filter(|p| !runs(p)).collect();
    if missing.is_empty() {
        return true;
    }
    eprintln!("installing {} with apt-get", missing.join(" "));
    let install = [&["install", "-y", "-q"][..], &missing].concat();
    // The package lists may be missing on a fresh image.
    if !apt_get(&install) {
        apt_get(&["update", "-q"]);
        apt_get(&install);
    }
    if programs.iter().all(|program| runs(program)) {
        return true;
    }
    eprintln!(
        "SKIPPED: {} not installed and apt-get could not install them",
        missing.join(" ")
    );
    false
}

/// tcpdump writing the loopback packets of some ports to a file.
pub struct Tcpdump {
    child: Child,
    /// The file it writes.
    file: std::path::PathBuf,
    /// An address whose packets it captures.
    knock: SocketAddr,
}

impl Tcpdump {
    /// Starts tcpdump on `lo` writing the packets of `ports` to `file`, and
    /// returns once it captures: a knock on `knock` (a TCP port among
    /// `ports`) has reached the file. `Err` with what tcpdump said if it
    /// cannot capture here.
    pub fn start(file: &Path, ports: &[u16], knock: SocketAddr) -> Result<Tcpdump, String> {
        let filter = ports
            .iter()
            .map(|port| format!("port {port}"))
            .collect::<Vec<_>>()
            .join(" or ");
        let mut child = Command::new("tcpdump")
            // Immediate mode: without it tcpdump reads the kernel's ring a
            // block at a time (up to a second late) and loses what is still
            // in the ring when it is stopped. `-Z root`: as root, tcpdump
            // would otherwise write the file as its own user.
            .args(["-i", "lo", "--immediate-mode", "-U", "-s", "0", "-n"])
            .args(["-Z", "root", "-w"])
            .arg(file)
            .arg(filter)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|error| format!("spawn tcpdump: {error}"))?;
        // Drained all along so tcpdump never blocks on a full pipe.
        let said = Arc::new(Mutex::new(String::new()));
        if let Some(mut stderr) = child.stderr.take() {
            let said = Arc::clone(&said);
            std::thread::spawn(move || {
                let mut chunk = [0u8; 1024];
                while let Ok(read @ 1..) = stderr.read(&mut chunk) {
                    let text = String::from_utf8_lossy(&chunk[..read]).into_owned();
                    said.lock().map(|mut said| said.push_str(&text)).ok();
                }
            });
        }
        let mut tcpdump = Tcpdump {
            child,
            file: file.to_path_buf(),
            knock,
        };
        // tcpdump may capture a little after it writes the file header:
        // knock until a knock is in the file.
        let deadline = Instant::now() + WAIT;
        while std::fs::metadata(file).map_or(true, |m| m.len() <= PCAP_HEADER_BYTES) {
            let exited = tcpdump.child.try_wait().ok().flatten().is_some();
            if exited || Instant::now() > deadline {
                drop(tcpdump);
                let said = said.lock().map(|said| said.clone()).unwrap_or_default();
                return Err(format!("tcpdump cannot capture on lo here: {said}"));
            }
            drop(TcpStream::connect(knock));
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(tcpdump)
    }

    /// Lets the last packets reach the file, then stops tcpdump (SIGTERM:
    /// it writes what it holds and closes the file) and waits for it.
    pub fn stop(mut self) {
        // Everything sent before a last knock is in the file once the knock
        // is: tcpdump writes packets in the order it reads them. A loaded
        // machine can keep it behind for seconds, so wait (bounded) until
        // the file holds a knock, found by its TCP ports (source, then
        // destination, as in its TCP header). The file merely growing is
        // not enough: it grows with the session's own late packets too.
        let mut knocks: Vec<[u8; 4]> = Vec::new();
        let mut last_knock: Option<Instant> = None;
        let deadline = Instant::now() + WAIT;
        loop {
            if last_knock.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
                if let Ok(stream) = TcpStream::connect(self.knock) {
                    if let Ok(local) = stream.local_addr() {
                        let mut ports = [0u8; 4];
                        ports[..2].copy_from_slice(&local.port().to_be_bytes());
                        ports[2..].copy_from_slice(&self.knock.port().to_be_bytes());
                        knocks.push(ports);
                    }
                }
                last_knock = Some(Instant::now());
            }
            let bytes = std::fs::read(&self.file).unwrap_or_default();
            let seen = knocks
                .iter()
                .any(|ports| bytes.windows(4).any(|window| window == ports));
            if seen || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(SETTLE);
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: kill(2) on the tcpdump this helper spawned and has not
        // reaped yet, with a valid signal number.
        let result = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(result, 0, "kill(SIGTERM) tcpdump");
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("tcpdump did not exit within {WAIT:?} of SIGTERM");
    }
}

impl Drop for Tcpdump {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
