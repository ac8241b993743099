#!/usr/bin/env bash
# One-step set-up on Debian 12 as root: the system packages the product needs
# (and, with --test, what the test suite needs), then npm ci and a build.
# Installs only what is missing; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

# command -> Debian package
runtime=(tar:tar gzip:gzip zstd:zstd python3:python3 make:make g++:g++ fusermount:fuse)
testing=(containerd:containerd runc:runc ctr-remote:stargz-snapshotter getfattr:attr setfattr:attr mksquashfs:squashfs-tools /usr/bin/time:time debootstrap:debootstrap chroot:coreutils docker-registry:docker-registry htpasswd:apache2-utils openssl:openssl skopeo:skopeo umoci:umoci squashfuse:squashfuse mkfs.erofs:erofs-utils redis-server:redis-server tc:iproute2 curl:curl)
want=("${runtime[@]}")
[ "${1:-}" = "--test" ] && want+=("${testing[@]}")

missing=()
for pair in "${want[@]}"; do
  cmd=${pair%%:*}; pkg=${pair##*:}
  command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
done
# libfuse2 for nydusd's FUSE mounts; busybox-static: the fixture image is built from Debian's package.
for pkg in libfuse2 busybox-static; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { echo "setup: need root to install: ${missing[*]}" >&2; exit 1; }
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $(printf '%s\n' "${missing[@]}" | sort -u) >/dev/null
fi

# Unprivileged mounts (libfuse 2 opens /dev/fuse itself before it falls back to fusermount):
# Debian's udev rule makes it 0666; containers without udev leave it 0600.
if [ "${1:-}" = "--test" ] && [ -c /dev/fuse ] && [ "$(stat -c %a /dev/fuse)" != 666 ] && [ "$(id -u)" = 0 ]; then
  chmod 0666 /dev/fuse
fi

node -e 'const [a,b]=process.versions.node.split(".").map(Number); if (a<20||(a===20&&b<19)) { console.error("setup: Node >= 20.19 is needed, this is "+process.version); process.exit(1) }'
npm ci --no-audit --no-fund --loglevel=error
npm run build --silent
echo "setup: done"
