#!/usr/bin/env bash
# Installs gVisor's runsc, pinned to one commit, as /usr/local/bin/runsc, and
# checks that it really runs a sandbox on this host. Run as root.
#
# runsc is built from source through the Go module proxy: upstream's release
# binaries come from a download site this project does not rely on, and the
# proxy serves gVisor's "go" branch as an ordinary module (only by
# pseudo-version: it refuses branch names such as @go). The build must be
# static (CGO_ENABLED=0); a cgo build links, but fails when it runs.
#
# Idempotent: when the installed binary already embeds the pinned module
# version (read with `go version -m`, since `runsc --version` of a source
# build does not name the commit), nothing is built or copied. A copy of the
# binary is kept under /var/cache/keygate, so reinstalling after the binary
# was removed takes no build, and the Go build cache makes a rebuild quick.
#
# Environment:
#   RUNSC_PREFIX=DIR   install into DIR/bin (default /usr/local)
#   RUNSC_SMOKE=0      skip the sandbox smoke test (default: run it)
# Prints "install-runsc: changed" on its last line when it installed
# something, "install-runsc: unchanged" otherwise.
set -euo pipefail

RUNSC_MODULE=gvisor.dev/gvisor
RUNSC_VERSION=v0.0.0-20260905035102-160fafc42237 # gVisor's go branch, 2026-09-05
PREFIX=${RUNSC_PREFIX:-/usr/local}
DEST=$PREFIX/bin/runsc
CACHE=/var/cache/keygate/runsc
CACHED=$CACHE/runsc-$RUNSC_VERSION

log() { echo "install-runsc: $*"; }
die() { echo "install-runsc: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (sudo $0)"
export PATH=/usr/local/go/bin:$PATH
command -v go >/dev/null || die "no Go toolchain on PATH; run scripts/install-deps.sh first"

# embeds_pin succeeds when binary $1 was built from the pinned gVisor module.
embeds_pin() {
	[ -x "$1" ] || return 1
	go version -m "$1" 2>/dev/null | awk -v m="$RUNSC_MODULE" -v v="$RUNSC_VERSION" \
		'($1 == "mod" || $1 == "dep") && $2 == m && $3 == v { found = 1 } END { exit !found }'
}

# build_runsc builds the pinned runsc into the cache directory.
build_runsc() {
	local gobin start
	gobin=$(mktemp -d)
	log "building runsc $RUNSC_VERSION (1-4 minutes on 2 cores; seconds with a warm Go build cache)..."
	start=$(date +%s)
	# GOFLAGS is cleared so a caller's -mod or -tags cannot leak into a build
	# that runs outside any module. -trimpath keeps build paths out of it.
	GOBIN=$gobin CGO_ENABLED=0 GOFLAGS= go install -trimpath "$RUNSC_MODULE/runsc@$RUNSC_VERSION"
	log "built in $(($(date +%s) - start))s"
	install -d -m 0755 "$CACHE"
	install -m 0755 "$gobin/runsc" "$CACHED"
	rm -rf "$gobin"
}

# smoke_test runs a shell in a real sandbox from an OCI bundle and checks
# that its output and exit status come back through `runsc run`. Platform
# systrap (kvm needs /dev/kvm and hangs on nested VMs), no network, no
# cgroup writes, a private state directory, and the host's / as a
# read-only root: nothing outlives the run.
smoke_test() {
	local dir id out rc=0
	dir=$(mktemp -d /tmp/keygate-runsc-smoke.XXXXXX)
	id=keygate-smoke-$$
	cat >"$dir/config.json" <<-'EOF'
	{
	  "ociVersion": "1.0.2",
	  "process": {
	    "user": {"uid": 0, "gid": 0},
	    "args": ["/bin/sh", "-c", "echo runsc-smoke-ok; exit 7"],
	    "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
	    "cwd": "/"
	  },
	  "root": {"path": "/", "readonly": true},
	  "hostname": "keygate-smoke",
	  "mounts": [
	    {"destination": "/proc", "type": "proc", "source": "proc"},
	    {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}
	  ],
	  "linux": {
	    "namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "ipc"}, {"type": "uts"}, {"type": "network"}]
	  }
	}
	EOF
	# --gofer-network-namespace=new: by default runsc pins an empty netns for
	# its file server at ROOT/null-netns (a bind mount that outlives the run).
	out=$(timeout 60 "$DEST" --root "$dir/state" --platform systrap --network none \
		--ignore-cgroups --gofer-network-namespace new run --bundle "$dir" "$id" </dev/null 2>"$dir/stderr") || rc=$?
	timeout 10 "$DEST" --root "$dir/state" delete --force "$id" >/dev/null 2>&1 || true
	if [ "$out" != runsc-smoke-ok ] || [ "$rc" != 7 ]; then
		echo "install-runsc: smoke test failed: exit $rc, output '$out'" >&2
		cat "$dir/stderr" >&2
		rm -rf "$dir"
		return 1
	fi
	rm -rf "$dir"
	log "smoke test ok (OCI bundle, platform systrap, --network=none)"
}

changed=unchanged
if embeds_pin "$DEST"; then
	log "runsc $RUNSC_VERSION already installed at $DEST"
else
	if embeds_pin "$CACHED"; then
		log "using the cached build $CACHED"
	else
		build_runsc
	fi
	install -d -m 0755 "$PREFIX/bin"
	install -m 0755 "$CACHED" "$DEST"
	log "installed $DEST"
	changed=changed
fi

"$DEST" --version | sed 's/^/install-runsc: /'
if [ "${RUNSC_SMOKE:-1}" != 0 ]; then
	smoke_test
fi
log "$changed"
