//! A fault-injecting TCP proxy for the links between cluster members, run
//! in the test process on plain threads: one listener per member, standing
//! in front of that member's real raft port. The cluster is initialised
//! with the proxies' addresses as its raft addresses, so every peer
//! connection passes through the proxy of the member it reaches.
//!
//! A connection's first 80 bytes are the peer HELLO (PROTOCOL.md P3), whose
//! `node_id` (offset 32) and `target_id` (offset 40) say which link it
//! carries; the proxy reads them, forwards them, then pipes bytes both ways.
//! `cut(a, b)` closes the link's connections in both directions at once and
//! refuses new ones (closed right after their HELLO) until `heal_all`.
//! Dropping `Proxies` closes everything and joins every thread it started.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// Bytes of the peer HELLO frame: header 16, version and reserved 8,
/// cluster id 8, node id 8, target id 8, nonce 32.
const HELLO_BYTES: usize = 80;
/// Offset of the sender's node id in the HELLO frame.
const HELLO_NODE_ID_AT: usize = 32;
/// Offset of the receiver's node id in the HELLO frame.
const HELLO_TARGET_ID_AT: usize = 40;
/// Longest wait for a connecting member's HELLO.
const HELLO_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest wait to reach the member behind a proxy.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How often an idle pipe or listener looks at the stop flag.
const POLL: Duration = Duration::from_millis(50);
/// Longest a pipe waits for a member to take bytes.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections one proxy carries at once; more are closed at accept (a
/// member keeps one per peer, so this is only reached by a runaway loop).
const CONNECTIONS_PER_PROXY_MAX: usize = 32;

/// The proxies of a whole cluster, one per member.
pub struct Proxies {
    shared: Arc<Shared>,
    addresses: BTreeMap<u64, SocketAddr>,
    listeners: Vec<JoinHandle<()>>,
}

/// What the listeners, the connections and the test share.
#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    state: Mutex<State>,
    /// Connections piped since start.
    piped: AtomicU64,
    /// Connections closed after their HELLO because their link was cut.
    refused: AtomicU64,
}

#[derive(Default)]
struct State {
    /// Cut links, each as (lower id, higher id).
    cut: BTreeSet<(u64, u64)>,
    /// Live connections, by serial number.
    links: BTreeMap<u64, Link>,
    next_serial: u64,
    /// Every connection thread started (finished ones are pruned).
    threads: Vec<JoinHandle<()>>,
}

/// A piped connection: its link and both sockets, so that a cut can
/// close it from outside its threads.
struct Link {
    from: u64,
    to: u64,
    sockets: [TcpStream; 2],
}

impl Link {
    fn close(&self) {
        for socket in &self.sockets {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }
}

/// The link between `a` and `b`, whichever way it was opened.
fn pair(a: u64, b: u64) -> (u64, u64) {
    (a.min(b), a.max(b))
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panicking proxy thread must not hide the test's own failure.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Proxies {
    /// Starts one proxy per member, in front of `targets` (member id and
    /// its real raft address).
    pub fn start(targets: &[(u64, SocketAddr)]) -> Proxies {
        let shared = Arc::new(Shared::default());
        let mut addresses = BTreeMap::new();
        let mut listeners = Vec::new();
        for &(id, target) in targets {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind a proxy");
            listener
                .set_nonblocking(true)
                .expect("nonblocking listener");
            addresses.insert(id, listener.local_addr().expect("proxy address"));
            let shared = Arc::clone(&shared);
            listeners.push(std::thread::spawn(move || {
                listen(&shared, &listener, id, target);
            }));
        }
        Proxies {
            shared,
            addresses,
            listeners,
        }
    }

    /// The address peers reach member `id` at (its raft address for the
    /// cluster).
    pub fn address(&self, id: u64) -> SocketAddr {
        self.addresses[&id]
    }

    /// Cuts the link between `a` and `b`: its connections in both
    /// directions are closed before this returns, and new ones are refused.
    pub fn cut(&self, a: u64, b: u64) {
        let mut state = self.shared.state();
        state.cut.insert(pair(a, b));
        state.links.retain(|_, link| {
            let on_it = pair(link.from, link.to) == pair(a, b);
            if on_it {
                link.close();
            }
            !on_it
        });
    }

    /// Cuts member `id` off from every other member.
    pub fn isolate(&self, id: u64) {
        let others: Vec<u64> = self
            .addresses
            .keys()
            .copied()
            .filter(|&o| o != id)
            .collect();
        for other in others {
            self.cut(id, other);
        }
    }

    /// Restores every link.
    pub fn heal_all(&self) {
        self.shared.state().cut.clear();
    }

    /// Connections piped since start (each carried one link one way).
    pub fn piped(&self) -> u64 {
        self.shared.piped.load(Ordering::Relaxed)
    }

    /// Connections refused because their link was cut.
    pub fn refused(&self) -> u64 {
        self.shared.refused.load(Ordering::Relaxed)
    }
}

impl Drop for Proxies {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for listener in self.listeners.drain(..) {
            let _ = listener.join();
        }
        // No listener runs now: no connection thread starts after this.
        let threads = {
            let mut state = self.shared.state();
            for link in state.links.values() {
                link.close();
            }
            std::mem::take(&mut state.threads)
        };
        for thread in threads {
            let _ = thread.join();
        }
    }
}

/// Accepts connections for member `id` (at `target`) until the stop flag.
fn listen(shared: &Arc<Shared>, listener: &TcpListener, id: u64, target: SocketAddr) {
    while !shared.stop.load(Ordering::SeqCst) {
        let incoming = match listener.accept() {
            Ok((incoming, _)) => incoming,
            Err(error) if error.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            Err(_) => {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let mut state = shared.state();
        state.threads.retain(|thread| !thread.is_finished());
        if state.threads.len() >= CONNECTIONS_PER_PROXY_MAX * 4 {
            continue;
        }
        let connection_shared = Arc::clone(shared);
        state.threads.push(std::thread::spawn(move || {
            carry(&connection_shared, incoming, id, target);
        }));
    }
}

/// Reads the HELLO of `incoming` (a connection to member `id`), then pipes
/// it to `target` unless its link is cut.
fn carry(shared: &Shared, incoming: TcpStream, id: u64, target: SocketAddr) {
    let mut incoming = incoming;
    if incoming.set_nonblocking(false).is_err()
        || incoming.set_read_timeout(Some(HELLO_TIMEOUT)).is_err()
    {
        return;
    }
    let mut hello = [0u8; HELLO_BYTES];
    if incoming.read_exact(&mut hello).is_err() {
        return;
    }
    let field = |at: usize| {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&hello[at..at + 8]);
        u64::from_le_bytes(bytes)
    };
    let (from, to) = (field(HELLO_NODE_ID_AT), field(HELLO_TARGET_ID_AT));
    let is_hello = hello[0..4] == (HELLO_BYTES as u32).to_le_bytes() && hello[4] == 0x01;
    if !is_hello || to != id {
        return;
    }
    if shared.state().cut.contains(&pair(from, to)) {
        shared.refused.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let Ok(mut outgoing) = TcpStream::connect_timeout(&target, CONNECT_TIMEOUT) else {
        return;
    };
    let _ = outgoing.set_nodelay(true);
    let _ = incoming.set_nodelay(true);
    if outgoing.write_all(&hello).is_err() {
        return;
    }
    for socket in [&incoming, &outgoing] {
        let bounded = socket.set_read_timeout(Some(POLL)).is_ok()
            && socket.set_write_timeout(Some(WRITE_TIMEOUT)).is_ok();
        if !bounded {
            return;
        }
    }
    let (Ok(incoming_copy), Ok(outgoing_copy)) = (incoming.try_clone(), outgoing.try_clone())
    else {
        return;
    };
    let serial = {
        let mut state = shared.state();
        let live = state.links.values().filter(|link| link.to == id).count();
        if state.cut.contains(&pair(from, to)) || live >= CONNECTIONS_PER_PROXY_MAX {
            shared.refused.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let serial = state.next_serial;
        state.next_serial += 1;
        state.links.insert(
            serial,
            Link {
                from,
                to,
                sockets: [incoming_copy, outgoing_copy],
            },
        );
        serial
    };
    shared.piped.fetch_add(1, Ordering::Relaxed);
    std::thread::scope(|scope| {
        scope.spawn(|| pipe(shared, &incoming, &outgoing));
        pipe(shared, &outgoing, &incoming);
    });
    shared.state().links.remove(&serial);
}

/// Copies `from` to `to` until either ends, a cut closes them, or the
/// proxies stop; then closes both, so the other direction ends too.
fn pipe(shared: &Shared, from: &TcpStream, to: &TcpStream) {
    let mut from = from;
    let mut to = to;
    let mut buffer = [0u8; 64 * 1024];
    while !shared.stop.load(Ordering::SeqCst) {
        match from.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => {
                if to.write_all(&buffer[..n]).is_err() {
                    break;
                }
            }
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
