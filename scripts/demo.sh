#!/usr/bin/env bash
# The demo: installs what it needs, then builds edgegate, creates namespaces, starts it with
# examples/demo.yaml, pushes curl and iperf3 traffic through a service address, prints the backend
# spread, the throughput and the flow table, and cleans up.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin:/usr/sbin:/sbin"
./scripts/deps.sh
exec go run ./examples/demo
