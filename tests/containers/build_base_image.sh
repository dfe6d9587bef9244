#!/usr/bin/env bash
# Bootstrap a Debian base image with Python 3.11 for the zone images, where no registry can be
# reached (this project's CI machine). The release pipeline uses python:3.11-slim instead.
#
#   tests/containers/build_base_image.sh [IMAGE]      (default localhost/zone-etl-base:<codename>)
#
# Prints the image name on stdout (progress goes to stderr).
# Needs root, debootstrap and podman. The Debian mirror is the one apt already uses on this machine
# (read from its sources), so no host name is written here. The machine's own extra CA certificates
# (/usr/local/share/ca-certificates) are trusted inside the image so that pip reaches the package
# index through a TLS-inspecting proxy exactly as on the host. Does nothing if the image exists.
set -euo pipefail

. /etc/os-release
codename="${VERSION_CODENAME:?no VERSION_CODENAME in /etc/os-release}"
image="${1:-localhost/zone-etl-base:${codename}}"
runtime="${CONTAINER_RUNTIME:-podman}"

if "$runtime" image exists "$image" 2>/dev/null; then
    echo "base image $image already exists" >&2
    echo "$image"
    exit 0
fi

mirror=""
if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    mirror=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
fi
if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
    mirror=$(awk '$1 == "deb" && $3 !~ /security/ {print $2; exit}' /etc/apt/sources.list)
fi
if [ -z "$mirror" ]; then
    echo "cannot find the Debian mirror in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list" >&2
    exit 2
fi

work=$(mktemp -d /tmp/zone-etl-base.XXXXXX)
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs"
echo "debootstrap $codename from $mirror into $rootfs" >&2
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    "$codename" "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 || {
    tail -40 "$work/debootstrap.log" >&2
    exit 1
}
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
    chroot "$rootfs" update-ca-certificates >/dev/null
fi
# python:3.11-slim has `python` on the PATH; the Dockerfiles rely on it.
ln -sf /usr/bin/python3 "$rootfs/usr/local/bin/python"
chroot "$rootfs" apt-get clean
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/log/*
tar -C "$rootfs" -c . | "$runtime" import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python"]' \
    - "$image" >/dev/null
echo "built base image $image" >&2
echo "$image"
