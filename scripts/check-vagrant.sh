#!/usr/bin/env bash
# Checks vagrant/Vagrantfile without starting a VM or downloading a box:
# `vagrant validate` for each provider the file configures, libvirt and
# VirtualBox, so a misspelt setting fails here rather than on someone's
# `vagrant up`. Installs Debian's vagrant and vagrant-libvirt packages if
# vagrant is missing. Run as root (or as anyone, once vagrant is installed).
#
# VirtualBox itself is not packaged for Debian 12; when VBoxManage is
# missing, a stand-in that only reports a version lets Vagrant load the
# VirtualBox provider and check its settings. Nothing here touches the
# network: Vagrant's version check and box update check are off, and its
# data goes to a temporary directory, not ~/.vagrant.d or the checkout.
set -euo pipefail
cd "$(dirname "$0")/../vagrant"

log() { echo "check-vagrant: $*"; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export VAGRANT_HOME=$tmp/home VAGRANT_DOTFILE_PATH=$tmp/dot
export VAGRANT_CHECKPOINT_DISABLE=1 VAGRANT_BOX_UPDATE_CHECK_DISABLE=1

# has_libvirt_plugin succeeds when Vagrant can load vagrant-libvirt.
has_libvirt_plugin() { vagrant plugin list 2>/dev/null | grep -q '^vagrant-libvirt '; }

missing=()
if ! command -v vagrant >/dev/null; then
	missing=(vagrant vagrant-libvirt)
elif ! has_libvirt_plugin; then
	missing=(vagrant-libvirt)
fi
if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
	log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# Without recommends: vagrant-libvirt's would bring a whole libvirt daemon.
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v vagrant >/dev/null || { echo "check-vagrant: vagrant missing (run as root to install it)" >&2; exit 1; }

if ! command -v VBoxManage >/dev/null; then
	mkdir "$tmp/bin"
	printf '#!/bin/sh\necho 7.0.0r0\n' >"$tmp/bin/VBoxManage"
	chmod +x "$tmp/bin/VBoxManage"
	export PATH=$tmp/bin:$PATH
fi

for provider in libvirt virtualbox; do
	if [ "$provider" = libvirt ] && ! has_libvirt_plugin; then
		log "vagrant-libvirt plugin missing: libvirt settings not checked" >&2
		continue
	fi
	log "vagrant validate (provider $provider)"
	VAGRANT_DEFAULT_PROVIDER=$provider vagrant validate
done
# The provisioner runs this script from the synced checkout.
[ -f ../scripts/provision.sh ] || { echo "check-vagrant: scripts/provision.sh missing" >&2; exit 1; }
log "ok"
