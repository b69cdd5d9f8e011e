#!/usr/bin/env bash
# Installs an etcd server for keygate's fleet-store tests (pkg/vault: the
# Etcd engine starts three-member clusters on loopback through
# internal/etcdtest). The tests find the binary as $KEYGATE_ETCD or `etcd`
# on PATH; they skip without one, and fail under KEYGATE_REQUIRE_ROOT.
#
# Debian's etcd-server package is used where apt has it (bookworm: 3.4,
# /usr/bin/etcd). The engine's client is go.etcd.io/etcd/client/v3 3.6,
# which speaks to 3.4 servers. Elsewhere, or with ETCD_FROM_SOURCE=1, the
# server is built from the Go module proxy (go.etcd.io/etcd/server/v3, whose
# module root is etcd's main package) into $PREFIX/bin/etcd.
#
# The package enables an etcd.service on hosts that run systemd; the tests
# start their own clusters, so when this script installed the package it
# stops and disables that service again.
#
# Idempotent: an etcd that is already on PATH is left alone.
# Environment:
#   ETCD_FROM_SOURCE=1   build from the module proxy even where apt has etcd
#   ETCD_VERSION=vX.Y.Z  version to build (default below)
#   ETCD_PREFIX=DIR      install a source build into DIR/bin (default /usr/local)
# Prints "install-etcd: changed" on its last line when it installed
# something, "install-etcd: unchanged" otherwise.
set -euo pipefail

ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
PREFIX=${ETCD_PREFIX:-/usr/local}

log() { echo "install-etcd: $*"; }
die() { echo "install-etcd: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (sudo $0)"
export PATH=/usr/local/go/bin:$PATH

if [ "${ETCD_FROM_SOURCE:-0}" != 1 ] && command -v etcd >/dev/null; then
	log "$(command -v etcd): $(etcd --version | head -1)"
	log unchanged
	exit 0
fi
if [ "${ETCD_FROM_SOURCE:-0}" = 1 ] && [ -x "$PREFIX/bin/etcd" ] &&
	go version -m "$PREFIX/bin/etcd" 2>/dev/null | grep -q "go.etcd.io/etcd/server/v3[[:space:]]*$ETCD_VERSION"; then
	log "$PREFIX/bin/etcd is $ETCD_VERSION"
	log unchanged
	exit 0
fi

# install_deb installs Debian's etcd-server and keeps its service off.
install_deb() {
	export DEBIAN_FRONTEND=noninteractive
	apt-cache show etcd-server >/dev/null 2>&1 || apt-get update -qq
	apt-cache show etcd-server >/dev/null 2>&1 || return 1
	apt-get install -y -qq etcd-server >/dev/null
	if [ -d /run/systemd/system ]; then
		systemctl disable --now etcd.service >/dev/null 2>&1 || true
	fi
	log "installed Debian's etcd-server: $(etcd --version | head -1)"
}

# build_source builds the etcd server from the Go module proxy.
build_source() {
	command -v go >/dev/null || die "no Go toolchain on PATH; run scripts/install-deps.sh first"
	local dir
	dir=$(mktemp -d)
	trap 'rm -rf "$dir"' RETURN
	(
		cd "$dir"
		go mod init keygate-etcd-build >/dev/null 2>&1
		go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
		CGO_ENABLED=0 go build -trimpath -o etcd go.etcd.io/etcd/server/v3
	)
	install -D -m 0755 "$dir/etcd" "$PREFIX/bin/etcd"
	log "built etcd $ETCD_VERSION into $PREFIX/bin/etcd"
}

if [ "${ETCD_FROM_SOURCE:-0}" = 1 ] || ! command -v apt-get >/dev/null || ! install_deb; then
	build_source
fi
command -v etcd >/dev/null || die "etcd still not on PATH"
log changed
