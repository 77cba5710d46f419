//! Interop: Kamailio as the originating proxy (tests/kamailio/redirect.cfg,
//! the snippet docs/OPERATIONS.md shows: `tm` and `uac_redirect`'s
//! `get_redirects` in a failure route) asks x700 where an INVITE goes,
//! follows x700's 302 to a sipp UAS standing for the callee, and the call
//! arrives there: both sipp instances end with one successful call (their
//! exit code 0). A second call to an unbound X comes back to the caller as
//! x700's 404.

mod common;

use common::{axb, x, Node};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use x700::client::Client;
use x700::protocol::{status, Role};

/// A child process killed (SIGTERM, then SIGKILL) when the test ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(pid) = libc::pid_t::try_from(self.0.id()) {
            // SAFETY: kill(2) on a pid this test spawned and has not reaped.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port free for both UDP and TCP on 127.0.0.1 (Kamailio and sipp need
/// one named in advance).
fn free_port() -> u16 {
    common::unassigned_port()
}

fn tool(name: &str, package: &str) -> &'static str {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "{name} is not installed: tools/test.sh installs it (apt-get install {package})"
    );
    if name == "sipp" {
        "sipp"
    } else {
        "kamailio"
    }
}

/// Starts Kamailio on `listen` with the redirect configuration pointing
/// at `x700`, and waits until it answers on its port.
fn kamailio(dir: &Path, listen: SocketAddr, x700: SocketAddr) -> Running {
    let template = include_str!("kamailio/redirect.cfg");
    let config = template
        .replace("@LISTEN@", &listen.to_string())
        .replace("@X700@", &x700.to_string());
    let file = dir.join("kamailio.cfg");
    std::fs::write(&file, config).expect("write kamailio.cfg");
    let check = Command::new(tool("kamailio", "kamailio"))
        .args(["-c", "-f", file.to_str().expect("utf-8")])
        .output()
        .expect("kamailio -c");
    assert!(
        check.status.success(),
        "kamailio refuses the configuration:\n{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let child = Command::new("kamailio")
        .args([
            "-f",
            file.to_str().expect("utf-8"),
            "-DD",
            "-E",
            "-m",
            "32",
            "-M",
            "8",
        ])
        .args(["-Y", dir.to_str().expect("utf-8")])
        .args(["-w", dir.to_str().expect("utf-8")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("kamailio.log")).expect("log file"))
        .spawn()
        .expect("spawn kamailio");
    let mut running = Running(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(listen).is_err() {
        let exited = matches!(running.0.try_wait(), Ok(Some(_)));
        assert!(
            Instant::now() < deadline && !exited,
            "kamailio did not listen on {listen} within 10 s: {}",
            std::fs::read_to_string(dir.join("kamailio.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    running
}

/// The caller's scenario: INVITE from `caller` to `x` through the proxy;
/// for `code` 200 a whole call (ACK, BYE), else that final answer.
fn uac_scenario(caller: &str, x_digits: &str, code: u16) -> String {
    let head = |method: &str, cseq: u32, to_tag: &str| {
        format!(
            "{method} sip:{x_digits}@x700.example SIP/2.0\n\
             Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]\n\
             From: <sip:{caller}@[local_ip]:[local_port]>;tag=[pid]t[call_number]\n\
             To: <sip:{x_digits}@x700.example>{to_tag}\nCall-ID: [call_id]\nCSeq: {cseq} {method}\n\
             Contact: <sip:{caller}@[local_ip]:[local_port]>\nMax-Forwards: 70\nContent-Length: 0\n"
        )
    };
    let rest = if code == 200 {
        format!(
            "<recv response=\"180\" optional=\"true\"/>\n<recv response=\"200\" rrs=\"true\"/>\n\
             <send><![CDATA[\n\n{}\n]]></send>\n<pause milliseconds=\"100\"/>\n\
             <send retrans=\"500\"><![CDATA[\n\n{}\n]]></send>\n<recv response=\"200\"/>\n",
            head("ACK", 1, "[peer_tag_param]").replace(
                &format!("ACK sip:{x_digits}@x700.example"),
                "ACK [next_url]"
            ),
            head("BYE", 2, "[peer_tag_param]").replace(
                &format!("BYE sip:{x_digits}@x700.example"),
                "BYE [next_url]"
            ),
        )
    } else {
        format!(
            "<recv response=\"{code}\"/>\n<send><![CDATA[\n\n{}\n]]></send>\n",
            head("ACK", 1, "[peer_tag_param]")
        )
    };
    format!(
        "<?xml version=\"1.0\" encoding=\"ISO-8859-1\" ?>\n<scenario name=\"caller\">\n\
         <send retrans=\"500\"><![CDATA[\n\n{}\n]]></send>\n\
         <recv response=\"100\" optional=\"true\"/>\n{rest}</scenario>\n",
        head("INVITE", 1, "")
    )
}

/// Runs sipp as the caller through `proxy`: one call, bounded.
fn call(dir: &Path, proxy: SocketAddr, caller: &str, x_digits: &str, code: u16) -> Output {
    let file = dir.join(format!("uac-{code}.xml"));
    std::fs::write(&file, uac_scenario(caller, x_digits, code)).expect("write scenario");
    Command::new(tool("sipp", "sip-tester"))
        .arg(proxy.to_string())
        .args(["-sf", file.to_str().expect("utf-8")])
        .args(["-m", "1", "-i", "127.0.0.1", "-t", "u1", "-nostdin"])
        .args(["-recv_timeout", "8000", "-timeout", "20s", "-timeout_error"])
        .args(["-trace_err", "-error_file"])
        .arg(dir.join(format!("uac-{code}-errors.log")))
        .stdin(Stdio::null())
        .output()
        .expect("run sipp")
}

#[test]
fn kamailio_follows_the_302_to_the_callee() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let callee_port = free_port();
    let config = dir.path().join("x700.toml");
    std::fs::write(
        &config,
        format!("[sip]\ncontact = \"sip:{{callee}}@127.0.0.1:{callee_port}\"\n"),
    )
    .expect("config");
    let node = Node::start(&[
        "--sip",
        "127.0.0.1:0",
        "--config",
        config.to_str().expect("utf-8"),
    ]);
    let mut admin = Client::connect(node.tcp, Role::Admin, "").expect("admin");
    let reply = admin
        .bind(&axb(x(1), "13800000001", "13900000001", "interop"))
        .expect("bind");
    assert_eq!(reply.status, status::OK);

    // The callee: sipp's built-in UAS, for one call.
    let uas = Command::new(tool("sipp", "sip-tester"))
        .args([
            "-sn",
            "uas",
            "-i",
            "127.0.0.1",
            "-p",
            &callee_port.to_string(),
        ])
        .args([
            "-m",
            "1",
            "-t",
            "u1",
            "-nostdin",
            "-timeout",
            "30s",
            "-timeout_error",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sipp uas");
    let mut uas = Running(uas);
    let proxy: SocketAddr = format!("127.0.0.1:{}", free_port())
        .parse()
        .expect("address");
    let _kamailio = kamailio(dir.path(), proxy, node.sip.expect("sip address"));

    let log = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap_or_default();
    let caller = call(dir.path(), proxy, "13800000001", "700000000000001", 200);
    assert!(
        caller.status.success(),
        "the caller's call through Kamailio failed ({:?}): {}\nsipp errors: {}\nkamailio: {}",
        caller.status,
        String::from_utf8_lossy(&caller.stderr),
        log("uac-200-errors.log"),
        log("kamailio.log")
    );
    // The callee's sipp ends after its one call: exit 0 means it arrived
    // and completed.
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = uas.0.try_wait().expect("wait sipp uas") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the callee's sipp did not finish its call"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "the callee's sipp: {status:?}");

    // A reject comes back through the proxy as x700 answered it.
    let refused = call(dir.path(), proxy, "13800000001", "700000000000002", 404);
    assert!(
        refused.status.success(),
        "an unbound X through Kamailio was not answered 404 ({:?}): {}\nkamailio: {}",
        refused.status,
        log("uac-404-errors.log"),
        log("kamailio.log")
    );
}
