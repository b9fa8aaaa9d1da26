#!/usr/bin/env bash
# Builds the ferry .deb from one ferry binary with plain dpkg-deb (no debhelper, no
# cargo-deb): the binary, the systemd unit, /etc/ferry/ferry.toml as a conffile, and the
# maintainer scripts that create the `ferry` system user and enable the service.
#
#   bash cross/debian/mkdeb.sh --bin PATH --arch arm64|armhf|amd64 --out DIR [--version V] [--fast]
#
# --fast: no compression (the tests package a 100 MB debug binary).
#
# Prints the path of the .deb. The same script packages the host binary in the tests
# (tests/packaging.rs), so the package layout is checked on every test run.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"

bin="" arch="" out="" version="" compress=xz
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin="$2"; shift 2 ;;
    --arch) arch="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --version) version="$2"; shift 2 ;;
    --fast) compress=none; shift ;;
    *) echo "mkdeb.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -n "$bin" ] && [ -n "$arch" ] && [ -n "$out" ] || {
  echo "usage: mkdeb.sh --bin PATH --arch ARCH --out DIR [--version V]" >&2; exit 2; }
[ -x "$bin" ] || { echo "mkdeb.sh: $bin is not an executable file" >&2; exit 1; }
[ -n "$version" ] || version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -1)"

# A dynamically linked binary needs the glibc it was linked against (at least the highest
# GLIBC_x.y symbol version it references); a static one needs nothing.
depends="adduser"
floor="$(readelf -V "$bin" 2>/dev/null | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' \
  | sort -t. -k1,1n -k2,2n -u | tail -1 || true)"
[ -n "$floor" ] && depends="libc6 (>= $floor), $depends"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
pkg="$work/ferry"
install -d -m 755 "$pkg/DEBIAN" "$pkg/usr/bin" "$pkg/lib/systemd/system" "$pkg/etc/ferry" \
  "$pkg/usr/share/doc/ferry" "$pkg/var/lib/ferry"
install -m 755 "$bin" "$pkg/usr/bin/ferry"
install -m 644 "$HERE/ferry.service" "$pkg/lib/systemd/system/ferry.service"
# Both hold secrets (upstream passwords, password hashes): root:ferry 0640 once the
# ferry group exists (postinst); the package itself can only say root:root.
install -m 640 "$HERE/ferry.toml" "$pkg/etc/ferry/ferry.toml"
install -m 640 /dev/null "$pkg/etc/ferry/passwd"
install -m 644 "$ROOT/README.md" "$pkg/usr/share/doc/ferry/README.md"
# The references the README links to (docs/*.md), beside it.
install -d -m 755 "$pkg/usr/share/doc/ferry/docs"
install -m 644 "$ROOT"/docs/*.md "$pkg/usr/share/doc/ferry/docs/"
[ -f "$ROOT/cross/README.md" ] && install -m 644 "$ROOT/cross/README.md" "$pkg/usr/share/doc/ferry/README.cross.md"
cat > "$pkg/usr/share/doc/ferry/copyright" <<COPY
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: ferry
License: Apache-2.0

Files: *
License: Apache-2.0
 On Debian systems the full text is in /usr/share/common-licenses/Apache-2.0.
COPY

size_kib="$(du -sk "$pkg" --exclude=DEBIAN | cut -f1)"
{
  echo "Package: ferry"
  echo "Version: $version"
  echo "Architecture: $arch"
  echo "Maintainer: ferry maintainers <ferry@localhost>"
  echo "Installed-Size: $size_kib"
  echo "Depends: $depends"
  echo "Recommends: ca-certificates"
  echo "Section: net"
  echo "Priority: optional"
  echo "Description: edge broker: MQTT and NATS in, durable store, forwarding upstream"
  echo " ferry accepts MQTT (3.1.1/5) and NATS clients, delivers to local subscribers,"
  echo " keeps events selected by forwarding rules in a crash-safe store and forwards"
  echo " them to an upstream MQTT broker, resuming after outages and power cuts."
  echo " Runs as the systemd service ferry.service; data in /var/lib/ferry."
} > "$pkg/DEBIAN/control"
# passwd ships empty and never changes, so dpkg keeps the users added to it on upgrade.
printf '/etc/ferry/ferry.toml\n/etc/ferry/passwd\n' > "$pkg/DEBIAN/conffiles"

cat > "$pkg/DEBIAN/postinst" <<'SH'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
  if ! getent passwd ferry >/dev/null; then
    adduser --system --group --home /var/lib/ferry --no-create-home \
      --gecos "ferry edge broker" ferry >/dev/null
  fi
  chown ferry:ferry /var/lib/ferry
  chmod 0750 /var/lib/ferry
  # Secrets: readable by the service's group, not by every user.
  for f in /etc/ferry/ferry.toml /etc/ferry/passwd; do
    [ -e "$f" ] && chown root:ferry "$f" && chmod 0640 "$f"
  done
  if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null || true
    systemctl enable ferry.service >/dev/null || true
    if [ -n "$2" ]; then
      systemctl try-restart ferry.service || true
    else
      systemctl start ferry.service || echo "ferry: not started; see journalctl -u ferry" >&2
    fi
  fi
fi
exit 0
SH
cat > "$pkg/DEBIAN/prerm" <<'SH'
#!/bin/sh
set -e
if [ -d /run/systemd/system ] && [ "$1" = remove ]; then
  systemctl stop ferry.service || true
fi
exit 0
SH
cat > "$pkg/DEBIAN/postrm" <<'SH'
#!/bin/sh
set -e
case "$1" in
  remove)
    if [ -d /run/systemd/system ]; then systemctl daemon-reload >/dev/null || true; fi ;;
  purge)
    # Purge deletes the store, including events not yet forwarded.
    systemctl disable ferry.service >/dev/null 2>&1 || true
    rm -rf /var/lib/ferry /var/lib/private/ferry
    if getent passwd ferry >/dev/null && command -v deluser >/dev/null; then
      deluser --system ferry >/dev/null || true
    fi ;;
esac
exit 0
SH
chmod 755 "$pkg/DEBIAN/postinst" "$pkg/DEBIAN/prerm" "$pkg/DEBIAN/postrm"

mkdir -p "$out"
deb="$out/ferry_${version}_${arch}.deb"
dpkg-deb --root-owner-group "-Z$compress" --build "$pkg" "$deb" >/dev/null
echo "$deb"
