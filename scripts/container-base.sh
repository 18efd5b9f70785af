#!/usr/bin/env bash
# A local stand-in for the Containerfile's base image (python:3.11-slim-bookworm) on a
# machine that reaches Debian's package mirrors but no container registry: a minimal
# Debian bookworm root file system (debootstrap, variant minbase) with Debian's
# Python 3.11 and venv, imported with `podman import`. Then build with
#   podman build --format docker --build-arg BASE_IMAGE=localhost/autimit-base:3.11-bookworm \
#       -t autimit-csms -f Containerfile .
# Usage (as root; needs debootstrap and podman: `apt-get install debootstrap podman`):
#   scripts/container-base.sh [--force] [TAG]   TAG defaults to $AUTIMIT_BASE_IMAGE or
#                                               localhost/autimit-base:3.11-bookworm
# An existing TAG is kept unless --force. The mirror is $DEBIAN_MIRROR, else the
# first Debian URI of this machine's apt sources.
# It is a stand-in, not the official image: Python is Debian's /usr/bin/python3
# (3.11.2 on bookworm) where the official image has its own in /usr/local.
set -euo pipefail

force=0
if [ "${1:-}" = --force ]; then force=1; shift; fi
tag=${1:-${AUTIMIT_BASE_IMAGE:-localhost/autimit-base:3.11-bookworm}}

if [ "$force" = 0 ] && podman image exists "$tag"; then
    echo "container-base: $tag exists (--force rebuilds it)" >&2
    exit 0
fi
for tool in debootstrap podman; do
    command -v "$tool" >/dev/null || {
        echo "container-base: $tool is missing (apt-get install $tool)" >&2; exit 2; }
done
[ "$(id -u)" = 0 ] || { echo "container-base: debootstrap needs root" >&2; exit 2; }

mirror=${DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
    mirror=$(cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
        | grep -oE '(URIs:|deb) +https?://[^ ]+/debian/?( |$)' | head -1 | awk '{print $2}' \
        || true)
fi
[ -n "$mirror" ] || { echo "container-base: set DEBIAN_MIRROR" >&2; exit 2; }

work=$(mktemp -d /var/tmp/autimit-base.XXXXXX)
rootfs=$work/rootfs
cleanup() {
    # debootstrap mounts /proc and /sys inside the target while it runs: never remove
    # the folder while anything is still mounted below it.
    if [ -d "$rootfs" ]; then
        awk -v root="$rootfs" 'index($2, root) == 1 {print $2}' /proc/self/mounts \
            | sort -r | while read -r mnt; do umount "$mnt" || umount -l "$mnt"; done
    fi
    if awk -v root="$work" 'index($2, root) == 1 {found=1} END {exit !found}' /proc/self/mounts
    then
        echo "container-base: something is still mounted below $work; left in place" >&2
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT

echo "container-base: debootstrap bookworm from $mirror ..." >&2
debootstrap --variant=minbase --include=python3,python3-venv bookworm "$rootfs" "$mirror" \
    > "$work/debootstrap.log" 2>&1 || { tail -20 "$work/debootstrap.log" >&2; exit 1; }

# Slim it like the official -slim images: no package lists, caches, docs or manuals.
chroot "$rootfs" apt-get clean
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/log/* \
    "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
    "$rootfs"/usr/share/locale/*
# The official image answers to `python`, too.
ln -sf python3 "$rootfs/usr/bin/python"

echo "container-base: importing as $tag ..." >&2
tar --numeric-owner -C "$rootfs" -c . | podman import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    - "$tag" >/dev/null
podman image ls "$tag"
