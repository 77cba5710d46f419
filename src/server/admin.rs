//! The admin HTTP endpoint: `/metrics` (OpenMetrics text), `/healthz` (the
//! process is up) and `/readyz` (every event loop runs, the node is not
//! stopping, its apply has not stalled and it does not lag too far), and
//! the capture switch: `POST /capture/start`, `POST /capture/stop`, and
//! `GET /capture` (`on` or `off`). It is scraped and probed every few seconds, never on the
//! request path.
//!
//! `/metrics` is OpenMetrics 1.0 text unless the scraper asks for the
//! Prometheus text format alone (see [`wants_prometheus_text`]).
//!
//! It is hyper's HTTP/1 server on a single-threaded tokio runtime of its own,
//! on the `x700-admin` thread. Its own runtime, because the event loops are
//! mio threads with no runtime and the replica's runtime carries the write
//! path: a flood of admin sockets must take time from neither, and one
//! thread is plenty for a few scrapes a second.
//!
//! No client can starve the probes or the node's file descriptors:
//! - every connection is a task of its own, so an idle or slow one delays no
//!   other (before, one blocking thread served one connection at a time and
//!   20 idle sockets held `/healthz` back 10 s);
//! - a request head must arrive whole within [`HEADER_READ_TIMEOUT`] of the
//!   moment the server starts waiting for it, which also bounds how long a
//!   kept-alive connection may sit idle between requests;
//! - no connection lives longer than [`CONNECTION_LIFETIME_MAX`];
//! - at most [`CONNECTIONS_MAX`] connections are open at once; past it a new
//!   one is closed as soon as it is accepted.
//!
//! The thread polls `Shared::stopping` every [`STOP_POLL_INTERVAL`]; once it
//! is set, the thread drops its runtime, which closes every connection, and
//! returns, so `Server::stop` joins it at once whatever the clients do.

use super::Shared;
use crate::replication::Lag;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ACCEPT, ALLOW, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Longest wait for a whole request head, from the moment the server starts
/// reading it: the first request's on a new connection, the next one's on a
/// kept-alive connection. A client trickling its head byte by byte
/// (slowloris), or never sending one, is closed when it runs out; so is a
/// kept-alive connection idle this long.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest life of one connection, however busy: then the server finishes
/// the request in hand, waits at most [`CLOSE_GRACE`] for it, and closes.
/// Scrapers reconnect; no client keeps a connection (and its file
/// descriptor) for ever by sending requests slowly or reading answers slowly.
pub const CONNECTION_LIFETIME_MAX: Duration = Duration::from_secs(30);
/// Longest wait for the request in hand once a connection has lived
/// [`CONNECTION_LIFETIME_MAX`].
pub const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// Most admin connections open at once. A few scrapers and probes need a
/// handful; this is far above that and far below the node's open-file
/// limit, so idle sockets on the admin port can never take the descriptors
/// the switches' connections need. A connection accepted past it is closed
/// at once, unanswered.
pub const CONNECTIONS_MAX: usize = 256;
/// Connections the kernel may queue before the server accepts them: above
/// [`CONNECTIONS_MAX`], so a burst of connections is accepted (and the ones
/// past the cap closed) rather than left in the queue unanswered.
const LISTEN_BACKLOG: i32 = 1024;
/// Largest read buffer of one connection, which bounds a request head:
/// hyper's smallest allowed value, far above any probe's or scraper's head.
const READ_BUFFER_BYTES_MAX: usize = 8192;
/// How often the server looks at `Shared::stopping`.
const STOP_POLL_INTERVAL: Duration = Duration::from_millis(20);
/// Pause after a failed `accept` (out of file descriptors, most likely), so
/// a failure that persists neither spins the thread nor floods the log.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);
/// At most one log line per this interval about failed accepts.
const ACCEPT_ERROR_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The content type of `/metrics`.
const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The content type of `/metrics` for scrapers that ask for the Prometheus
/// text format.
const PROMETHEUS_TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// The content type of every other answer.
const TEXT_CONTENT_TYPE: &str = "text/plain; charset=utf-8";

/// Binds the address and serves until the node stops. Returns the serving
/// thread and the address actually bound; binding errors are returned here,
/// before any thread starts.
pub fn start(
    address: SocketAddr,
    shared: Arc<Shared>,
) -> std::io::Result<(JoinHandle<()>, SocketAddr)> {
    let listener = bind(address)?;
    let bound = listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    // The listener registers with the runtime's reactor, so it is made
    // inside the runtime's context.
    let listener = {
        let _context = runtime.enter();
        TcpListener::from_std(listener)?
    };
    let mut registry = Registry::default();
    registry.register_collector(Box::new(shared.metrics.clone()));
    if let Some(replica) = shared.replica.get() {
        registry.register_collector(Box::new(super::metrics::LagMetrics(Arc::clone(replica))));
    }
    registry.register_collector(Box::new(super::metrics::ApplyStallMetrics(Arc::clone(
        &shared.apply_stall,
    ))));
    registry.register_collector(Box::new(super::capture::CaptureMetrics(Arc::clone(
        &shared.capture,
    ))));
    let registry = Arc::new(registry);
    let handle = std::thread::Builder::new()
        .name("x700-admin".into())
        .spawn(move || {
            runtime.block_on(serve(listener, shared, registry));
            // Dropping the runtime here drops every connection's task, and
            // so closes every admin socket still open.
        })?;
    Ok((handle, bound))
}

/// A non-blocking listening socket with [`LISTEN_BACKLOG`]. `SO_REUSEADDR`
/// as the standard library sets it (a restarted node rebinds at once while
/// old connections linger in `TIME_WAIT`); never `SO_REUSEPORT`.
fn bind(address: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(address),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// Accepts connections and gives each one a task, until the node stops.
async fn serve(listener: TcpListener, shared: Arc<Shared>, registry: Arc<Registry>) {
    let permits = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(READ_BUFFER_BYTES_MAX);
    let mut stop_poll = tokio::time::interval(STOP_POLL_INTERVAL);
    let mut accept_error_logged: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop_poll.tick() => {
                if shared.stopping.load(Ordering::SeqCst) {
                    return;
                }
                continue;
            }
        };
        match accepted {
            Ok((stream, _peer)) => {
                // Past the cap the stream is dropped here: closed at once.
                let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                    continue;
                };
                let service = {
                    let shared = Arc::clone(&shared);
                    let registry = Arc::clone(&registry);
                    service_fn(move |request: Request<Incoming>| {
                        let response = respond(&request, &shared, &registry);
                        async move { Ok::<_, Infallible>(response) }
                    })
                };
                let connection = http.serve_connection(TokioIo::new(stream), service);
                tokio::spawn(async move {
                    let mut connection = std::pin::pin!(connection);
                    // Errors are the client's doing (a timeout, a bad head,
                    // a reset): the connection just ends.
                    let lived =
                        tokio::time::timeout(CONNECTION_LIFETIME_MAX, connection.as_mut()).await;
                    if lived.is_err() {
                        connection.as_mut().graceful_shutdown();
                        let _ = tokio::time::timeout(CLOSE_GRACE, connection).await;
                    }
                    drop(permit);
                });
            }
            Err(error) => {
                let now = Instant::now();
                if accept_error_logged
                    .is_none_or(|at| now.duration_since(at) >= ACCEPT_ERROR_LOG_INTERVAL)
                {
                    eprintln!("x700: admin accept: {error}");
                    accept_error_logged = Some(now);
                }
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
            }
        }
    }
}

/// The pages the endpoint serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Page {
    /// `/metrics`.
    Metrics,
    /// `/healthz`.
    Health,
    /// `/readyz`.
    Readiness,
    /// `GET /capture`: whether the node captures.
    CaptureState,
    /// `POST /capture/start`.
    CaptureStart,
    /// `POST /capture/stop`.
    CaptureStop,
}

/// Which page a request asks for, or the error status it gets: 404 for a
/// path that is not a page (whatever the method), 405 for a page asked with
/// a method other than GET or HEAD, or for a capture switch asked with
/// another method than POST (a crawler's GET never switches it). The query
/// string is ignored.
fn route(method: &Method, path: &str) -> Result<Page, StatusCode> {
    let switch = match path {
        "/capture/start" => Some(Page::CaptureStart),
        "/capture/stop" => Some(Page::CaptureStop),
        _ => None,
    };
    if let Some(page) = switch {
        return if method == Method::POST {
            Ok(page)
        } else {
            Err(StatusCode::METHOD_NOT_ALLOWED)
        };
    }
    let page = match path {
        "/capture" => Page::CaptureState,
        "/metrics" => Page::Metrics,
        "/healthz" => Page::Health,
        "/readyz" => Page::Readiness,
        _ => return Err(StatusCode::NOT_FOUND),
    };
    if method == Method::GET || method == Method::HEAD {
        Ok(page)
    } else {
        Err(StatusCode::METHOD_NOT_ALLOWED)
    }
}

/// The answer to one request. A HEAD request gets the GET answer's head:
/// hyper sends its headers, `content-length` included, and not its body.
fn respond(
    request: &Request<Incoming>,
    shared: &Shared,
    registry: &Registry,
) -> Response<Full<Bytes>> {
    match route(request.method(), request.uri().path()) {
        Ok(Page::Metrics) => {
            let mut text = String::new();
            match prometheus_client::encoding::text::encode(&mut text, registry) {
                Ok(()) if wants_prometheus_text(request.headers().get(ACCEPT)) => answer(
                    StatusCode::OK,
                    PROMETHEUS_TEXT_CONTENT_TYPE,
                    super::metrics::prometheus_text(&text),
                ),
                Ok(()) => answer(StatusCode::OK, OPENMETRICS_CONTENT_TYPE, text),
                Err(_) => answer(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    TEXT_CONTENT_TYPE,
                    "encoding failed\n".into(),
                ),
            }
        }
        Ok(Page::Health) => answer(StatusCode::OK, TEXT_CONTENT_TYPE, "ok\n".into()),
        Ok(Page::CaptureState) => {
            let state = if shared.capture.on() { "on\n" } else { "off\n" };
            answer(StatusCode::OK, TEXT_CONTENT_TYPE, state.into())
        }
        Ok(page @ (Page::CaptureStart | Page::CaptureStop)) => {
            // Stopping waits (milliseconds, at most a few seconds) for the
            // writer to close its file, so the file is whole once the
            // answer says so.
            let switched = if page == Page::CaptureStart {
                shared.capture.switch_on()
            } else {
                shared.capture.switch_off()
            };
            match switched {
                Ok(()) => {
                    let state = if shared.capture.on() { "on\n" } else { "off\n" };
                    answer(StatusCode::OK, TEXT_CONTENT_TYPE, state.into())
                }
                Err(error @ super::capture::SwitchError::NotConfigured) => answer(
                    StatusCode::CONFLICT,
                    TEXT_CONTENT_TYPE,
                    format!("{error}\n"),
                ),
                Err(error) => answer(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    TEXT_CONTENT_TYPE,
                    format!("{error}\n"),
                ),
            }
        }
        Ok(Page::Readiness) => {
            let running =
                shared.ready.load(Ordering::SeqCst) && !shared.stopping.load(Ordering::SeqCst);
            let lag = shared.replica.get().map(|r| r.lag());
            let refused =
                |reason: String| answer(StatusCode::SERVICE_UNAVAILABLE, TEXT_CONTENT_TYPE, reason);
            let stalled = shared.apply_stall.is_stalled();
            match readiness(
                running,
                stalled,
                lag,
                shared.config.limits.ready_lag_entries_max,
            ) {
                Readiness::Ready => answer(StatusCode::OK, TEXT_CONTENT_TYPE, "ready\n".into()),
                Readiness::NotRunning => refused("not ready\n".into()),
                Readiness::ApplyStalled => refused(format!(
                    "not ready: apply stalled: {}\n",
                    shared.apply_stall.reason().unwrap_or_default()
                )),
                Readiness::Lagging(entries) => refused(format!(
                    "not ready: {entries} committed entries behind the leader\n"
                )),
                Readiness::Unreached => refused(
                    "not ready: no leader has reached this member since it started\n".into(),
                ),
            }
        }
        Err(StatusCode::METHOD_NOT_ALLOWED) => {
            let mut response = answer(
                StatusCode::METHOD_NOT_ALLOWED,
                TEXT_CONTENT_TYPE,
                "method not allowed\n".into(),
            );
            let allowed = if request.uri().path().starts_with("/capture/") {
                "POST"
            } else {
                "GET, HEAD"
            };
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static(allowed));
            response
        }
        Err(status) => answer(status, TEXT_CONTENT_TYPE, "not found\n".into()),
    }
}

/// What `/readyz` answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Readiness {
    /// 200.
    Ready,
    /// 503: an event loop is not running yet, or the node is stopping.
    NotRunning,
    /// 503: a follower this many entries behind the leader's commits, whose
    /// lookups would miss too many writes; ready again once caught up.
    Lagging(u64),
    /// 503: this member cannot make room to apply a committed entry (a
    /// full disk): it waits and retries, and its tables fall further
    /// behind until it can; ready again once the entry applies.
    ApplyStalled,
    /// 503: a member of a cluster that no leader has reached since it
    /// started: it cannot tell how far behind it is (a member restarted
    /// after a long stop may be far behind), so it waits for the leader's
    /// first append, one heartbeat (50 ms) once the leader reconnects.
    Unreached,
}

/// The readiness rule: a node is ready while every event loop runs and it
/// is not stopping, and, when `lag_entries_max` is not 0, while it trails
/// the leader's commits by fewer than `lag_entries_max` entries, which it
/// can only know once a leader has reached it. A member that has heard
/// from a leader stays ready when no leader reaches it any more (lookups
/// go on through a failover); `lag.ms` shows that. `lag` is `None` before
/// the write path has started. A member whose apply has stalled
/// (`apply_stalled`) is not ready whatever the lag limit: its tables stop
/// at the entry it cannot apply.
fn readiness(
    running: bool,
    apply_stalled: bool,
    lag: Option<Lag>,
    lag_entries_max: u64,
) -> Readiness {
    if !running {
        return Readiness::NotRunning;
    }
    if apply_stalled {
        return Readiness::ApplyStalled;
    }
    match lag {
        _ if lag_entries_max == 0 => Readiness::Ready,
        Some(Lag { ms: None, .. }) => Readiness::Unreached,
        Some(Lag { entries, .. }) if entries >= lag_entries_max => Readiness::Lagging(entries),
        _ => Readiness::Ready,
    }
}

/// True when a scraper's `Accept` header names the Prometheus text format
/// (`text/plain`) and not OpenMetrics. Everyone else, a missing header and
/// `*/*` included, gets OpenMetrics, as before; Prometheus asks for
/// OpenMetrics first, `promtool` users and older scrapers ask for
/// `text/plain`. Quality values are not weighed: a scraper that names
/// OpenMetrics at all can read it.
fn wants_prometheus_text(accept: Option<&HeaderValue>) -> bool {
    let Some(accept) = accept.and_then(|value| value.to_str().ok()) else {
        return false;
    };
    let accept = accept.to_ascii_lowercase();
    accept.contains("text/plain") && !accept.contains("application/openmetrics-text")
}

/// A response with a body of known length.
fn answer(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

#[cfg(test)]
mod tests {
    //! Proves the routing rules: pages by path, 404 before 405, GET and HEAD
    //! only.
    use super::*;

    #[test]
    fn a_follower_past_the_lag_limit_is_not_ready_and_zero_turns_the_limit_off() {
        let lag = |entries, ms| Some(Lag { entries, ms });
        assert_eq!(
            readiness(true, false, lag(0, Some(0)), 100),
            Readiness::Ready
        );
        assert_eq!(
            readiness(true, false, lag(99, Some(10)), 100),
            Readiness::Ready
        );
        assert_eq!(
            readiness(true, false, lag(100, Some(10)), 100),
            Readiness::Lagging(100)
        );
        assert_eq!(
            readiness(true, false, lag(u64::MAX, Some(10)), 0),
            Readiness::Ready
        );
        // Cut off from the leader after hearing it: still ready.
        assert_eq!(
            readiness(true, false, lag(0, Some(60_000)), 100),
            Readiness::Ready
        );
        // Stopping wins over lag: the answer says why.
        assert_eq!(
            readiness(false, false, lag(500, Some(10)), 100),
            Readiness::NotRunning
        );
        assert_eq!(readiness(false, false, None, 0), Readiness::NotRunning);
        assert_eq!(readiness(true, false, None, 100), Readiness::Ready);
    }

    /// Guards the "apply stalled" state of deterministic apply: a member
    /// that cannot apply a committed entry is out of `/readyz` whatever
    /// its lag and the lag limit; a stopping node still says it stops.
    #[test]
    fn a_member_whose_apply_stalled_is_not_ready() {
        let lag = Some(Lag {
            entries: 0,
            ms: Some(0),
        });
        assert_eq!(readiness(true, true, lag, 100), Readiness::ApplyStalled);
        assert_eq!(readiness(true, true, lag, 0), Readiness::ApplyStalled);
        assert_eq!(readiness(true, true, None, 0), Readiness::ApplyStalled);
        assert_eq!(readiness(false, true, lag, 0), Readiness::NotRunning);
        assert_eq!(readiness(true, false, lag, 0), Readiness::Ready);
    }

    #[test]
    fn a_member_no_leader_has_reached_is_not_ready_unless_the_limit_is_off() {
        let unreached = Some(Lag {
            entries: 0,
            ms: None,
        });
        assert_eq!(readiness(true, false, unreached, 100), Readiness::Unreached);
        assert_eq!(readiness(true, false, unreached, 0), Readiness::Ready);
    }

    #[test]
    fn pages_answer_get_and_head() {
        for method in [Method::GET, Method::HEAD] {
            assert_eq!(route(&method, "/metrics"), Ok(Page::Metrics));
            assert_eq!(route(&method, "/healthz"), Ok(Page::Health));
            assert_eq!(route(&method, "/readyz"), Ok(Page::Readiness));
        }
    }

    #[test]
    fn other_methods_on_a_page_are_not_allowed() {
        for method in [Method::POST, Method::PUT, Method::DELETE, Method::OPTIONS] {
            assert_eq!(
                route(&method, "/healthz"),
                Err(StatusCode::METHOD_NOT_ALLOWED)
            );
        }
    }

    /// The capture switches answer POST only, so that a crawler or a
    /// browser's prefetch never switches the capture; its state is a page.
    #[test]
    fn capture_switches_answer_post_only() {
        assert_eq!(
            route(&Method::POST, "/capture/start"),
            Ok(Page::CaptureStart)
        );
        assert_eq!(route(&Method::POST, "/capture/stop"), Ok(Page::CaptureStop));
        for method in [Method::GET, Method::HEAD, Method::PUT] {
            for path in ["/capture/start", "/capture/stop"] {
                assert_eq!(route(&method, path), Err(StatusCode::METHOD_NOT_ALLOWED));
            }
        }
        assert_eq!(route(&Method::GET, "/capture"), Ok(Page::CaptureState));
        assert_eq!(
            route(&Method::GET, "/capture/x"),
            Err(StatusCode::NOT_FOUND)
        );
    }

    #[test]
    fn the_prometheus_text_format_only_when_asked_for_without_openmetrics() {
        let wants =
            |accept: &'static str| wants_prometheus_text(Some(&HeaderValue::from_static(accept)));
        assert!(!wants_prometheus_text(None));
        assert!(!wants("*/*"));
        assert!(wants("text/plain; version=0.0.4"));
        assert!(wants("Text/Plain;version=0.0.4;q=0.9,*/*;q=0.1"));
        // What Prometheus sends.
        assert!(!wants(
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
             version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        ));
    }

    #[test]
    fn unknown_paths_are_not_found_whatever_the_method() {
        for path in ["/", "/metrics/", "/healthz/x", "/nonsense", ""] {
            assert_eq!(route(&Method::GET, path), Err(StatusCode::NOT_FOUND));
            assert_eq!(route(&Method::POST, path), Err(StatusCode::NOT_FOUND));
        }
    }
}
