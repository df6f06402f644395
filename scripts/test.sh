#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, vet, every test with the race detector
# (namespace end-to-end tests included: run as root), a short fuzz smoke of every fuzz target, and
# the bench harness in -quick mode (asserting only that it produced results).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin:/usr/sbin:/sbin"
./scripts/deps.sh

echo "== gofmt, go vet"
bad=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$bad" ]; then echo "gofmt needed:"; echo "$bad"; exit 1; fi
go vet ./...

echo "== go test -race (unit, package and namespace tests)"
go test -race -count=1 -timeout 20m $(go list ./... | grep -v '/e2e$')
# The end-to-end tests run alone: their throughput assertions (a flow keeps half its rate under a
# SYN flood) must not share the 2 CPUs with other packages' tests.
echo "== go test -race ./e2e (edgegate subprocess in namespaces, real clients)"
go test -race -count=1 -timeout 20m ./e2e

echo "== fuzz smoke"
# A count budget, not a duration: with -fuzztime <duration>, Go 1.26's fuzz coordinator can report
# a spurious "context deadline exceeded" failure at the deadline (golang/go#75804, fixed in 1.27).
FUZZ_EXECS=${FUZZ_EXECS:-30000x}
for pkg in $(go list ./...); do
	dir=$(go list -f '{{.Dir}}' "$pkg")
	for f in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
		echo "fuzz $pkg $f"
		go test -run '^$' -fuzz "^$f\$" -fuzztime "$FUZZ_EXECS" "$pkg" >/tmp/edgegate-fuzz.log 2>&1 || { cat /tmp/edgegate-fuzz.log; exit 1; }
	done
done

echo "== bench -quick"
go run ./bench -quick -out "$(mktemp -d)"
echo "all tests passed"
