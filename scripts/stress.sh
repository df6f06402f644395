#!/usr/bin/env bash
# Flakiness hunt (issue 16): every package but e2e with the race detector, 20 runs of each test
# (-count=20), then the end-to-end package 3 times (namespaces: run as root). Run it before
# resolving an issue; any failure is a bug to fix at its root, never a reason to rerun.
#
#   scripts/stress.sh                    # everything
#   scripts/stress.sh ./ingress ./health # only these packages (./e2e runs E2E_RUNS times if named)
#   COUNT=50 E2E_RUNS=5 scripts/stress.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin:/usr/sbin:/sbin"
COUNT=${COUNT:-20}
E2E_RUNS=${E2E_RUNS:-3}
[ -n "${SKIP_DEPS:-}" ] || ./scripts/deps.sh

e2e=false
pkgs=()
if [ $# -eq 0 ]; then
	mapfile -t pkgs < <(go list ./... | grep -v '/e2e$')
	e2e=true
else
	for p in "$@"; do
		case "$p" in
		./e2e | e2e | */e2e) e2e=true ;;
		*) pkgs+=("$p") ;;
		esac
	done
fi

if [ ${#pkgs[@]} -gt 0 ]; then
	echo "== go test -race -count=$COUNT ${pkgs[*]}"
	go test -race -count="$COUNT" -timeout 60m "${pkgs[@]}"
fi
if $e2e; then
	if [ "$(id -u)" != 0 ]; then
		echo "stress: the e2e package needs root (network namespaces)" >&2
		exit 1
	fi
	# Alone, as in CI: its throughput assertions must not share the CPUs with other packages.
	for i in $(seq "$E2E_RUNS"); do
		echo "== go test -race ./e2e (run $i of $E2E_RUNS)"
		go test -race -count=1 -timeout 20m ./e2e
	done
fi
echo "stress: passed"
