#!/usr/bin/env bash
# Installs what the demo, the tests and the bench need on a fresh Debian machine (run as root).
# Services that packages would start (nginx, haproxy) are kept from starting: the tests run their
# own instances with their own configuration files.
set -euo pipefail
export PATH="$PATH:/usr/local/go/bin"
need=()
for pair in iperf3:iperf3 curl:curl ip:iproute2 ping:iputils-ping ss:iproute2 tcpdump:tcpdump \
	iptables:iptables nft:nftables haproxy:haproxy nginx:nginx wrk:wrk ethtool:ethtool \
	vtysh:frr; do
	cmd=${pair%%:*} pkg=${pair#*:}
	command -v "$cmd" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin" command -v "$cmd" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
	echo "deps: installing ${need[*]}"
	policy=/usr/sbin/policy-rc.d
	created=0
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created=1
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${need[@]}" ca-certificates >/dev/null
	[ "$created" = 1 ] && rm -f "$policy"
fi
command -v go >/dev/null 2>&1 || { echo "deps: Go is required (https://go.dev/dl), /usr/local/go/bin on PATH" >&2; exit 1; }
go mod download
# h2spec (HTTP/2 conformance, run by the ingress tests): built from the Go module proxy, never vendored.
h2spec_version=v2.2.1+incompatible
if ! command -v h2spec >/dev/null 2>&1 && [ ! -x "$(go env GOPATH)/bin/h2spec" ]; then
	echo "deps: installing h2spec $h2spec_version"
	GOFLAGS=-mod=mod go install "github.com/summerwind/h2spec/cmd/h2spec@$h2spec_version"
fi
