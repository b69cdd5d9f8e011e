#!/usr/bin/env bash
# Provisions a Debian 12 / Ubuntu 22.04+ machine (or the Vagrant VM) to run
# keygate from this checkout: the dependencies (scripts/install-deps.sh),
# gVisor's runsc (scripts/install-runsc.sh), keygate itself (`make install`:
# /usr/local/bin/keygate, /usr/local/bin/keygated and keygated.service), and
# keygated.service enabled and started where systemd runs the machine.
# Run as root from anywhere.
#
# Idempotent: a second run changes nothing, and says so. The last line is
# "provision: changed: WHAT..." or "provision: nothing changed";
# scripts/check-provision-idempotent.sh holds it to that.
#
# Environment:
#   KEYGATE_PROVISION_START=0   enable keygated.service but do not start or
#                               restart it (default 1: start it, and restart
#                               it when it runs an older binary or unit than
#                               the installed ones)
#   RUNSC_SMOKE=0               skip runsc's sandbox smoke test
set -euo pipefail

cd "$(dirname "$0")/.."
start=${KEYGATE_PROVISION_START:-1}
changed=()
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

log() { echo "provision: $*"; }

if [ "$(id -u)" != 0 ]; then
	echo "provision: run as root (sudo $0)" >&2
	exit 1
fi

# systemd_running succeeds when systemd is PID 1 (the test sd_booted(3)
# uses); containers and some CI machines run something else there.
systemd_running() { [ -d /run/systemd/system ]; }

# older_than_install succeeds when the running keygated.service started
# before its binary or unit was last installed (by this run, or by an
# earlier one that was told not to restart it).
older_than_install() {
	local started f
	started=$(systemctl show -p ExecMainStartTimestamp --value keygated.service)
	started=$(date -d "$started" +%s 2>/dev/null) || return 1
	for f in /usr/local/bin/keygated /etc/systemd/system/keygated.service; do
		[ "$(stat -c %Y "$f")" -gt "$started" ] && return 0
	done
	return 1
}

# agent_answers succeeds once the agent answers on its control socket,
# waiting up to ten seconds for a freshly started one.
agent_answers() {
	local i
	for i in $(seq 50); do
		/usr/local/bin/keygate vault list >/dev/null 2>&1 && return 0
		systemctl is-active --quiet keygated.service || [ "$i" -lt 5 ] || return 1
		sleep 0.2
	done
	return 1
}

agent_failed() {
	echo "provision: keygated.service does not run:" >&2
	systemctl status --no-pager keygated.service >&2 || true
	exit 1
}

# pkg_state lists installed packages and the Go toolchain, to tell whether
# install-deps.sh changed anything.
pkg_state() {
	dpkg-query -W -f='${Package} ${Version} ${Status}\n' 2>/dev/null
	/usr/local/go/bin/go version 2>/dev/null || true
}

log "dependencies"
before=$(pkg_state)
bash scripts/install-deps.sh
[ "$before" = "$(pkg_state)" ] || changed+=(deps)
export PATH=/usr/local/go/bin:$PATH

log "gVisor runsc"
bash scripts/install-runsc.sh | tee "$tmp/runsc.log"
[ "$(tail -n1 "$tmp/runsc.log")" = "install-runsc: unchanged" ] || changed+=(runsc)

log "building and installing keygate"
# The checkout may belong to another user (a synced folder in the VM), and
# git then refuses root, failing Go's VCS stamping: the build does without.
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-buildvcs=false"
make --no-print-directory install | tee "$tmp/install.log" # builds first
grep -q '/keygate installed$' "$tmp/install.log" && changed+=(keygate)
grep -q '/keygated installed$' "$tmp/install.log" && changed+=(keygated)
grep -q '/keygated.service installed$' "$tmp/install.log" && changed+=(unit)

if ! systemd_running; then
	log "systemd is not PID 1 here ($(cat /proc/1/comm)): keygated.service not enabled or started"
	log "run the agent by hand: keygated --state-dir /var/lib/keygate &"
else
	if [ "$(systemctl is-enabled keygated.service 2>/dev/null)" != enabled ]; then
		systemctl enable keygated.service
		changed+=(enabled)
	fi
	if [ "$start" = 1 ]; then
		action=
		for c in "${changed[@]}"; do
			case $c in keygated | unit) action=restart ;; esac
		done
		if ! systemctl is-active --quiet keygated.service; then
			action=start
		elif [ -z "$action" ] && older_than_install; then
			action=restart
		fi
		if [ -n "$action" ]; then
			systemctl "$action" keygated.service || agent_failed
			changed+=("${action}ed")
		fi
		agent_answers || agent_failed
		log "keygated.service is running; try: keygate vault list"
	else
		log "KEYGATE_PROVISION_START=0: keygated.service left as it was ($(systemctl is-active keygated.service || true))"
	fi
fi

if [ ${#changed[@]} -eq 0 ]; then
	log "nothing changed"
else
	log "changed: ${changed[*]}"
fi
