#!/usr/bin/env bash
# Installs what `make bench` needs besides keygate's own dependencies
# (scripts/install-deps.sh): h2load (nghttp2-client), wrk, mitmproxy,
# squid-openssl and curl, from Debian's packages. Run as root. Idempotent:
# a second run installs nothing. The squid package's own service is left
# stopped: the benchmark runs squid in the foreground with its own config.
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
	echo "bench/install: run as root (sudo $0)" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive

pkgs=(nghttp2-client wrk mitmproxy squid-openssl curl)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
	echo "bench/install: everything installed"
	exit 0
fi

echo "bench/install: installing ${missing[*]}"
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# A squid the package started would hold port 3128 and a cache for nothing.
if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
	systemctl disable --now squid >/dev/null 2>&1 || true
fi
