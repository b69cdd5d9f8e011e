#!/usr/bin/env bash
# Checks that scripts/provision.sh is idempotent: runs it once (which may
# install things), records what provisioning owns, runs it again, and fails
# unless the second run reported "nothing changed" and the record is the
# same afterwards: the installed files (content, mode, owner, mtime, inode,
# so even an identical rewrite counts), the package list, the Go
# toolchain, and keygated.service's enablement and, under systemd, its
# state and main PID (a restart counts). Run as root; takes what provision.sh
# takes, twice (the second run is quick).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
	echo "check-provision-idempotent: run as root (sudo $0)" >&2
	exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# manifest prints everything provisioning may change, one fact a line.
manifest() {
	local f
	for f in /usr/local/bin/keygate /usr/local/bin/keygated /usr/local/bin/runsc \
		/usr/local/bin/go /usr/local/bin/gofmt /usr/local/go/bin/go \
		/etc/systemd/system/keygated.service; do
		if [ -e "$f" ] || [ -L "$f" ]; then
			stat -c '%n %F %s %a %U:%G mtime=%Y inode=%i' "$f"
			[ -L "$f" ] || sha256sum "$f"
		else
			echo "$f absent"
		fi
	done
	find /var/cache/keygate -printf '%p %y %s %m %T@ %i\n' 2>/dev/null | sort || true
	find /etc/systemd/system -name 'keygated*' -printf '%p -> %l\n' | sort
	dpkg-query -W -f='${Package} ${Version} ${Status}\n'
	if [ -d /run/systemd/system ]; then
		systemctl show keygated.service \
			-p UnitFileState -p ActiveState -p MainPID -p ExecMainStartTimestamp -p NRestarts
	fi
}

run() {
	local n=$1 t0
	t0=$(date +%s)
	echo "check-provision-idempotent: provision run $n"
	bash scripts/provision.sh 2>&1 | tee "$tmp/run$n.log"
	echo "check-provision-idempotent: provision run $n took $(($(date +%s) - t0))s"
}

run 1
manifest >"$tmp/before"
run 2
manifest >"$tmp/after"

fail=0
if ! diff -u "$tmp/before" "$tmp/after"; then
	echo "check-provision-idempotent: the second run changed the files, packages or service above" >&2
	fail=1
fi
last=$(tail -n1 "$tmp/run2.log")
if [ "$last" != "provision: nothing changed" ]; then
	echo "check-provision-idempotent: the second run reported: $last" >&2
	fail=1
fi
[ "$fail" = 0 ] || exit 1
echo "check-provision-idempotent: ok (second run changed nothing)"
