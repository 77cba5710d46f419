//! `x700 serve`: runs a node until SIGTERM or SIGINT, then stops accepting,
//! answers what is in flight, flushes and exits 0.

use super::args::ServeArgs;
use crate::server::config::{Config, Credential};
use crate::server::Server;
use crate::store::clock::SystemClock;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Builds the configuration: file, then flags.
fn config_of(args: &ServeArgs) -> Result<Config, String> {
    let mut config = match &args.config {
        Some(path) => Config::from_file(path).map_err(|e| e.to_string())?,
        None => Config::default(),
    };
    if let Some(data) = &args.data {
        config.data.clone_from(data);
    }
    if let Some(listen) = &args.listen {
        config.listen.clone_from(listen);
    }
    if args.udp.is_some() {
        config.udp.clone_from(&args.udp);
    }
    if args.admin.is_some() {
        config.admin.clone_from(&args.admin);
    }
    if let Some(address) = &args.enum_dns {
        config.enum_dns = Some(match config.enum_dns.take() {
            Some(crate::frontend::enum_dns::EnumConfig::Table(settings)) => {
                crate::frontend::enum_dns::EnumConfig::Table(
                    crate::frontend::enum_dns::EnumSettings {
                        listen: Some(address.clone()),
                        ..settings
                    },
                )
            }
            _ => crate::frontend::enum_dns::EnumConfig::Address(address.clone()),
        });
    }
    if args.sip.is_some() {
        config.sip.listen.clone_from(&args.sip);
    }
    if let Some(event_loops) = args.event_loops {
        config.event_loops = event_loops;
    }
    if let Some(io) = args.io.as_deref() {
        // clap admits only the two names.
        config.io = crate::server::config::IoBackend::parse(io)
            .ok_or_else(|| format!("--io {io}: expected epoll or uring"))?;
    }
    if let Some(table_shards) = args.table_shards {
        config.table_shards = table_shards;
    }
    if let Some(node_id) = args.node_id {
        config.node_id = node_id;
    }
    config.allow_legacy_x |= args.allow_legacy_x;
    if args.no_pin {
        config.pin_cores = false;
    }
    if let Some(v) = args.max_connections {
        config.limits.connections_max = v;
    }
    if let Some(v) = args.max_frame_bytes {
        config.limits.request_frame_bytes_max = v;
    }
    if let Some(v) = args.max_in_flight {
        config.limits.in_flight_per_connection_max = v;
    }
    if let Some(v) = args.max_output_bytes {
        config.limits.output_buffer_bytes_max = v;
    }
    if let Some(v) = args.max_connections_per_source {
        config.limits.connections_per_source_max = v;
    }
    if let Some(v) = args.hello_deadline_ms {
        config.limits.hello_deadline_ms = v;
    }
    if let Some(v) = args.idle_timeout_s {
        config.limits.idle_timeout_s = v;
    }
    if let Some(v) = args.max_output_bytes_total {
        config.limits.output_bytes_total_max = v;
    }
    if let Some(v) = args.udp_lookups_per_source_per_s {
        config.limits.udp_lookups_per_source_per_s = v;
    }
    config.allow_short_tokens |= args.allow_short_tokens;
    if args.raft.is_some() {
        config.raft.clone_from(&args.raft);
    }
    if args.cluster_secret.is_some() {
        config.cluster_secret.clone_from(&args.cluster_secret);
    }
    if let Some(id) = args.cluster_id {
        config.cluster_id = id;
    }
    if let Some(v) = args.ready_lag_entries_max {
        config.limits.ready_lag_entries_max = v;
    }
    if args.capture.is_some() {
        config.capture.file.clone_from(&args.capture);
    }
    if let Some(v) = args.capture_max_bytes {
        config.capture.max_bytes = v;
    }
    if let Some(v) = args.capture_files {
        config.capture.files = v;
    }
    if args.capture_off {
        config.capture.on_at_start = false;
    }
    for text in &args.credentials {
        config.credentials.push(parse_credential(text)?);
    }
    Ok(config)
}

/// `ROLE:TOKEN` or `platform:TOKEN:1,2,3`.
fn parse_credential(text: &str) -> Result<Credential, String> {
    let mut parts = text.splitn(3, ':');
    let role = parts.next().unwrap_or_default().to_string();
    let token = parts.next().unwrap_or_default().to_string();
    let tenants = match parts.next() {
        None | Some("") => Vec::new(),
        Some(list) => list
            .split(',')
            .map(|t| {
                t.trim()
                    .parse::<u32>()
                    .map_err(|_| format!("credential {text:?}: bad tenant {t:?}"))
            })
            .collect::<Result<_, _>>()?,
    };
    if token.is_empty() {
        return Err(format!(
            "credential {text:?}: expected ROLE:TOKEN[:TENANTS]"
        ));
    }
    Ok(Credential {
        token,
        role,
        tenants,
    })
}

/// Warns when the configuration file holds tokens and others may read it.
fn warn_if_readable_by_others(path: &std::path::Path, config: &Config) {
    use std::os::unix::fs::PermissionsExt;
    if config.credentials.is_empty() {
        return;
    }
    if let Ok(metadata) = std::fs::metadata(path) {
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            eprintln!(
                "x700 serve: warning: {} holds credential tokens and is readable by others \
                 (mode {mode:04o}): chmod 600 it",
                path.display()
            );
        }
    }
}

/// Runs the node; returns the exit code: 0 after a clean stop, 2 for a
/// configuration that cannot be used (a usage error), 1 for anything else.
pub fn serve(args: &ServeArgs) -> i32 {
    let config = match config_of(args) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("x700 serve: {message}");
            return 2;
        }
    };
    if let Some(path) = &args.config {
        warn_if_readable_by_others(path, &config);
    }
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // Registration only fails for forbidden signals; these two are not.
        let _ = signal_hook::flag::register(signal, Arc::clone(&stop));
    }
    let protected = config.credentials.is_empty();
    let data = config.data.display().to_string();
    let server = match Server::start(config, Arc::new(SystemClock)) {
        Ok(server) => server,
        Err(error @ crate::server::StartError::Config(_)) => {
            eprintln!("x700 serve: {error}");
            return 2;
        }
        Err(error) => {
            eprintln!("x700 serve: {error}");
            return 1;
        }
    };
    let udp = server
        .udp_address
        .map_or_else(|| "off".to_string(), |a| a.to_string());
    let admin = server
        .admin_address
        .map_or_else(|| "off".to_string(), |a| a.to_string());
    let sip = server
        .sip_address
        .map_or_else(|| "off".to_string(), |a| a.to_string());
    let raft = server
        .raft_address()
        .map_or_else(|| "off".to_string(), |a| a.to_string());
    let enum_dns = server
        .enum_address
        .map_or_else(|| "off".to_string(), |a| a.to_string());
    println!(
        "x700 serving tcp={} udp={udp} admin={admin} data={data} event_loops={} table_shards={} \
         io={} open_files_limit={} output_bytes_total_max={} raft={raft} enum={enum_dns} sip={sip}",
        server.tcp_address,
        server.event_loops(),
        server.table_shards(),
        server.io().name(),
        server.open_files_limit,
        server.output_bytes_total_max
    );
    if protected {
        println!("x700: no credential configured: protected mode, any role without a token from loopback clients only (configure a credential to end it)");
    }
    println!(
        "x700: try `x700 lookup --server {} --caller 13800138000 --called 700123456789012 --json`; stop with Ctrl-C or SIGTERM",
        server.tcp_address
    );
    let _ = std::io::stdout().flush();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("x700: stopping: answering in-flight requests, flushing tables");
    let _ = std::io::stdout().flush();
    match server.stop() {
        Ok(()) => {
            println!("x700: stopped cleanly");
            0
        }
        Err(error) => {
            eprintln!("x700: stop: {error}");
            1
        }
    }
}
