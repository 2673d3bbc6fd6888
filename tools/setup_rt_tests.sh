#!/usr/bin/env bash
# cyclictest (Debian's rt-tests) for bench/bench_machine_latency.py: the machine's own wake-up latency
# under the stack's figures. Installed with apt-get when missing and run as root; otherwise says what
# to install (only that bench needs it).
set -euo pipefail
if command -v cyclictest >/dev/null; then
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "setup: bench/bench_machine_latency.py needs rt-tests; run: sudo apt-get install -y rt-tests" >&2
  exit 0
fi
echo "setup: installing rt-tests (apt-get) for bench/bench_machine_latency.py"
apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rt-tests >/dev/null
