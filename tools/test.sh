#!/usr/bin/env bash
# Runs x700's whole test suite, exactly as CI does (.ci/run calls this).
# Installs whatever the tests need first: cargo-nextest (the machine image
# has it), and the two reference parsers tests/admin.rs checks the /metrics
# page with: promtool (Debian package `prometheus`) and the Python client's
# OpenMetrics parser (PyPI `prometheus-client`); tcpdump and tshark, for the
# real captures tests/capture_read.rs and tests/dissector.rs decode; kdig
# (knot-dnsutils), the DNS client of tests/enum_dns.rs; sipp (Debian
# `sip-tester`) and kamailio, for the SIP front-end's tests. Each is
# installed only when missing, quietly.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install --locked cargo-nextest
fi
# Runs a command quietly; shows its output only if it fails.
quietly() {
  local output
  if ! output=$("$@" 2>&1); then
    printf '%s\n' "$output" >&2
    return 1
  fi
}
if ! command -v promtool >/dev/null 2>&1; then
  echo "tools/test.sh: installing promtool (Debian package prometheus)"
  quietly apt-get update
  DEBIAN_FRONTEND=noninteractive quietly apt-get install -y --no-install-recommends prometheus
fi
if ! command -v tshark >/dev/null 2>&1; then
  echo "tools/test.sh: installing tshark (tests/dissector.rs decodes a real node's traffic)"
  quietly apt-get update
  DEBIAN_FRONTEND=noninteractive quietly apt-get install -y tshark
fi
if ! command -v tcpdump >/dev/null 2>&1; then
  echo "tools/test.sh: installing tcpdump (tests/capture_read.rs and tests/dissector.rs capture on lo)"
  quietly apt-get update
  DEBIAN_FRONTEND=noninteractive quietly apt-get install -y --no-install-recommends tcpdump
fi
if ! command -v kdig >/dev/null 2>&1; then
  echo "tools/test.sh: installing kdig (Debian package knot-dnsutils: tests/enum_dns.rs asks a real node)"
  quietly apt-get update
  DEBIAN_FRONTEND=noninteractive quietly apt-get install -y --no-install-recommends knot-dnsutils
fi
if ! command -v sipp >/dev/null 2>&1; then
  echo "tools/test.sh: installing sipp (Debian package sip-tester; tests/sip.rs and tests/sip_kamailio.rs)"
  quietly apt-get update
  DEBIAN_FRONTEND=noninteractive quietly apt-get install -y --no-install-recommends sip-tester
fi
if ! command -v kamailio >/dev/null 2>&1; then
  echo "tools/test.sh: installing kamailio (tests/sip_kamailio.rs: the proxy that follows x700's 302)"
  quietly apt-get update
  DEBIAN_FRONTEND=noninteractive quietly apt-get install -y --no-install-recommends kamailio
fi
if ! python3 -c 'import prometheus_client.openmetrics.parser' >/dev/null 2>&1; then
  echo "tools/test.sh: installing the Python OpenMetrics parser (prometheus-client)"
  PIP_ROOT_USER_ACTION=ignore quietly python3 -m pip install --disable-pip-version-check prometheus-client
fi
cargo nextest run --release --no-fail-fast "$@"
# The tests that start a node, again on the io_uring backend: tests/common
# spawns every node with `--io $X700_TEST_IO`. The one build serves both
# runs; tests/io_backends.rs already runs each backend itself.
server_tests=$(grep -lE 'Node::start|start_member|serve_expecting_exit' tests/*.rs |
  xargs -n1 basename | sed 's/\.rs$//' | grep -vx io_backends)
filter=$(printf 'binary(%s) | ' $server_tests)
echo "tools/test.sh: the server tests again with X700_TEST_IO=uring"
X700_TEST_IO=uring cargo nextest run --release --no-fail-fast -E "${filter% | }" "$@"
