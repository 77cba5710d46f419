//! The node's listening sockets: the TCP listener and UDP socket every
//! front-end binds (the binary protocol's, SIP's and ENUM's), the SIP
//! front-end's pair on one port, and the `StartError` a failed bind becomes.

use super::config::{Config, ConfigError};
use super::{worker, StartError};
use std::net::SocketAddr;

/// Turns an I/O error on the socket `what` at `address` into a
/// `StartError::Socket`.
pub(super) fn socket_error(
    what: &'static str,
    address: SocketAddr,
) -> impl Fn(std::io::Error) -> StartError {
    move |source| StartError::Socket {
        what,
        address: address.to_string(),
        source,
    }
}

/// A TCP listener (the binary protocol's, and the SIP and ENUM
/// front-ends'). No `SO_REUSEPORT`: a second process (or anything
/// running as the same user) cannot bind the node's address and take a
/// share of its connections; binding fails with "address in use". Every
/// event loop polls a duplicate of this one socket.
pub(crate) fn tcp_listener(address: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(address),
        socket2::Type::STREAM,
        None,
    )?;
    // Only lets a restarted node bind while old connections linger in
    // TIME_WAIT; on Linux it never lets two listeners share an address.
    socket.set_reuse_address(true)?;
    socket.bind(&address.into())?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// A UDP socket (the binary protocol's, and the SIP and ENUM
/// front-ends'), with large buffers. Neither `SO_REUSEPORT` nor
/// `SO_REUSEADDR` (which for UDP would let another socket share the
/// address): a second bind fails.
pub(crate) fn udp_socket(address: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(address),
        socket2::Type::DGRAM,
        None,
    )?;
    let _ = socket.set_recv_buffer_size(4 << 20);
    let _ = socket.set_send_buffer_size(4 << 20);
    socket.bind(&address.into())?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Tries port 0 gets to find a port free for both UDP and TCP.
const SIP_PORT_TRIES: usize = 16;

/// The SIP front-end's sockets: UDP first, then TCP on the port UDP got
/// (port 0 picks one for both: another port is tried while the one UDP got
/// is taken for TCP), and its checked settings.
pub(super) fn sip_front(
    address: SocketAddr,
    config: &Config,
) -> Result<worker::SipFront, StartError> {
    let mut tries = 0;
    let (udp, listener, bound) = loop {
        let udp = udp_socket(address).map_err(socket_error("sip", address))?;
        let bound = udp.local_addr().map_err(socket_error("sip", address))?;
        match tcp_listener(bound) {
            Ok(listener) => break (udp, listener, bound),
            Err(error)
                if address.port() == 0
                    && error.kind() == std::io::ErrorKind::AddrInUse
                    && tries < SIP_PORT_TRIES =>
            {
                tries += 1;
            }
            Err(error) => return Err(socket_error("sip", bound)(error)),
        }
    };
    let settings =
        crate::frontend::sip::Settings::from_config(&config.sip).map_err(ConfigError::Invalid)?;
    Ok(worker::SipFront {
        settings,
        udp,
        listener,
        address: bound,
        local_host: bound.to_string().into_bytes(),
    })
}
