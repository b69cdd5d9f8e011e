#!/usr/bin/env bash
# Installs what keygate needs on a Debian or Ubuntu host: the BPF toolchain
# (clang, llvm, libbpf headers, bpftool), the clients the demo and tests run
# inside sandboxes, and Go if the host has none new enough. Run as root.
# Idempotent: a second run installs nothing.
set -euo pipefail

GO_VERSION=1.26.8 # the toolchain go.mod asks for, fetched from the Go module proxy

if [ "$(id -u)" != 0 ]; then
	echo "install-deps: run as root (sudo $0)" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive

# The BPF toolchain and the host tools keygate uses (nsenter is in
# util-linux, always present); then the clients the end-to-end tests run
# inside sandboxes, unchanged: curl, Python requests, Node.js fetch, gh,
# git and (below, from npm) sentry-cli.
pkgs=(clang llvm libbpf-dev bpftool make git curl ca-certificates iproute2 dnsutils openssl
	python3 python3-requests gh)
# Node.js may come from elsewhere (NodeSource ships npm inside its nodejs);
# Debian's packages only when there is none.
command -v node >/dev/null || pkgs+=(nodejs)
command -v npm >/dev/null || pkgs+=(npm)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "install-deps: installing ${missing[*]}"
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# sentry-cli: the npm package ships the binary for this platform.
SENTRY_CLI_VERSION=3.8.0
if ! command -v sentry-cli >/dev/null || ! sentry-cli --version | grep -q "$SENTRY_CLI_VERSION"; then
	echo "install-deps: installing sentry-cli $SENTRY_CLI_VERSION from npm"
	npm install -g --silent "@sentry/cli@$SENTRY_CLI_VERSION" >/dev/null 2>&1 ||
		npm install -g "@sentry/cli@$SENTRY_CLI_VERSION"
fi

# go_ok succeeds when a Go of at least 1.26 is on PATH or in /usr/local/go.
go_ok() {
	local go
	go=$(command -v go || echo /usr/local/go/bin/go)
	[ -x "$go" ] || return 1
	local v
	v=$("$go" env GOVERSION 2>/dev/null | sed 's/^go//') || return 1
	local major=${v%%.*} rest=${v#*.}
	local minor=${rest%%.*}
	[ "$major" -gt 1 ] || { [ "$major" -eq 1 ] && [ "$minor" -ge 26 ]; }
}

if ! go_ok; then
	# Debian's own Go is too old to build keygate, but it can fetch the
	# official toolchain, which the Go module proxy serves as a module.
	echo "install-deps: installing Go $GO_VERSION from the Go module proxy"
	apt-get install -y -qq --no-install-recommends golang-go >/dev/null
	tmp=$(mktemp -d)
	trap 'chmod -R u+w "$tmp"; rm -rf "$tmp"' EXIT
	mod="golang.org/toolchain@v0.0.1-go${GO_VERSION}.linux-$(dpkg --print-architecture)"
	dir=$(cd "$tmp" && GOPATH="$tmp/gopath" GOFLAGS=-modcacherw GO111MODULE=on \
		/usr/bin/go mod download -json "$mod" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
	[ -d "$dir" ] || { echo "install-deps: could not fetch $mod" >&2; exit 1; }
	rm -rf /usr/local/go.new
	cp -r "$dir" /usr/local/go.new
	chmod -R a+rX /usr/local/go.new
	chmod a+x /usr/local/go.new/bin/* /usr/local/go.new/pkg/tool/*/*
	rm -rf /usr/local/go
	mv /usr/local/go.new /usr/local/go
	ln -sf /usr/local/go/bin/go /usr/local/bin/go
	ln -sf /usr/local/go/bin/gofmt /usr/local/bin/gofmt
fi
echo "install-deps: ok ($(PATH=/usr/local/go/bin:$PATH go version))"

# gVisor's runsc, pinned, for --runtime runsc and its end-to-end tests
# (a static build from the Go module proxy: one to four minutes the first
# time, cached afterwards).
PATH=/usr/local/go/bin:$PATH "$(dirname "$0")/install-runsc.sh" | tail -n 1

# etcd, for the fleet store's tests (three-member clusters on loopback).
PATH=/usr/local/go/bin:$PATH "$(dirname "$0")/install-etcd.sh" | tail -n 1
