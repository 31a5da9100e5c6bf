#!/usr/bin/env bash
# package.sh - builds detour's Debian package: the binary, the systemd unit, a commented
# /etc/detour/detour.toml and example zone (conffiles), man pages and shell completions
# generated from the CLI itself, and a postinst that creates the `detour` system user.
#
# usage: deploy/package.sh [--debug] [--out DIR]
#   --debug   package target/debug/detour (CI checks the packaging without a release build)
#   --out     where the .deb goes (default target/deb); its path is printed last
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
profile=release out="$root/target/deb"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --debug) profile=debug; shift;;
    --out) out="$2"; shift 2;;
    -h|--help) sed -n '2,8p' "$0"; exit 0;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
for c in dpkg-deb dpkg gzip strip; do
  command -v "$c" >/dev/null || { echo "missing $c (apt-get install -y dpkg-dev binutils)" >&2; exit 2; }
done

cd "$root"
# With the cluster (etcd): the package is the complete detour.
if [[ $profile == release ]]; then cargo build --release --locked --quiet --features cluster; else cargo build --locked --quiet --features cluster; fi
bin="$root/target/$profile/detour"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)"
arch="$(dpkg --print-architecture)"
stage="$(mktemp -d /tmp/detour-deb.XXXXXX)"
trap 'rm -rf "$stage"' EXIT
pkg="$stage/detour_${version}_${arch}"

install -d "$pkg/DEBIAN" "$pkg/usr/bin" "$pkg/lib/systemd/system" "$pkg/etc/detour/zones" \
  "$pkg/usr/share/man/man1" "$pkg/usr/share/doc/detour" \
  "$pkg/usr/share/bash-completion/completions" "$pkg/usr/share/zsh/vendor-completions" \
  "$pkg/usr/share/fish/vendor_completions.d"
install -m 0755 "$bin" "$pkg/usr/bin/detour"
strip --strip-unneeded "$pkg/usr/bin/detour"
# The unit as shipped in deploy/, with the packaged binary's path.
sed 's|/usr/local/bin/detour|/usr/bin/detour|' deploy/detour.service >"$pkg/lib/systemd/system/detour.service"
chmod 0644 "$pkg/lib/systemd/system/detour.service"

# The annotated example, with the paths a packaged install uses.
{
  echo "# /etc/detour/detour.toml: detour's configuration (the annotated example it ships)."
  echo "# Edit it, check it (detour check --config /etc/detour/detour.toml), then start"
  echo "# the service: systemctl enable --now detour. See man detour and /usr/share/doc/detour."
  sed -e 's|^state_dir    = "state" .*|state_dir    = "/var/lib/detour"     # overrides, incidents, last states|' \
      -e 's|^zones_dir    = "../zones" .*|zones_dir    = "zones"               # /etc/detour/zones: one TOML file per zone|' \
      -e 's|^token_file = "state/admin.token" .*|token_file = "/var/lib/detour/admin.token"   # bearer token for the admin API over TCP|' \
      config/detour.toml
} >"$pkg/etc/detour/detour.toml"
grep -q '^state_dir    = "/var/lib/detour"' "$pkg/etc/detour/detour.toml" || { echo "state_dir not rewritten" >&2; exit 1; }
grep -q '^zones_dir    = "zones"' "$pkg/etc/detour/detour.toml" || { echo "zones_dir not rewritten" >&2; exit 1; }
install -m 0644 zones/example.test.toml "$pkg/etc/detour/zones/example.test.toml"
chmod 0644 "$pkg/etc/detour/detour.toml"

"$bin" generate man --out "$stage/man" >/dev/null
for m in "$stage"/man/*.1; do gzip -9n -c "$m" >"$pkg/usr/share/man/man1/$(basename "$m").gz"; done
"$bin" generate completions --out "$stage/completions" >/dev/null
install -m 0644 "$stage/completions/detour.bash" "$pkg/usr/share/bash-completion/completions/detour"
install -m 0644 "$stage/completions/_detour" "$pkg/usr/share/zsh/vendor-completions/_detour"
install -m 0644 "$stage/completions/detour.fish" "$pkg/usr/share/fish/vendor_completions.d/detour.fish"

cat >"$pkg/usr/share/doc/detour/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: detour

Files: *
Copyright: 2026 The detour authors
License: Apache-2.0
 On Debian systems, the full text of the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
EOF
printf 'detour (%s) unstable; urgency=medium\n\n  * Package built from the source tree.\n\n -- detour maintainers <detour@example.test>  %s\n' \
  "$version" "$(date -R -u -d @"${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}")" \
  | gzip -9n >"$pkg/usr/share/doc/detour/changelog.gz"
install -m 0644 README.md "$pkg/usr/share/doc/detour/README.md"
cp -r docs "$pkg/usr/share/doc/detour/docs"
find "$pkg/usr/share/doc/detour" -type f -exec chmod 0644 {} +

cat >"$pkg/DEBIAN/control" <<EOF
Package: detour
Version: $version
Architecture: $arch
Maintainer: detour maintainers <detour@example.test>
Depends: libc6, adduser
Suggests: espeak-ng
Section: net
Priority: optional
Homepage: https://example.test/detour
Description: DNS failover and maintenance-redirect controller
 An authoritative DNS server that watches the services its records point at
 and, when one fails, swaps its records to a backup or to an outage page it
 serves itself (what happened, what is being done, what still works), and
 swaps them back when the service recovers. Operators steer it with TOML
 files, a CLI and SIGHUP.
EOF
printf '/etc/detour/detour.toml\n/etc/detour/zones/example.test.toml\n' >"$pkg/DEBIAN/conffiles"
cat >"$pkg/DEBIAN/postinst" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = "configure" ]; then
    mkdir -p /var/lib/detour
    if ! getent passwd detour >/dev/null; then
        adduser --system --group --home /var/lib/detour --no-create-home \
            --gecos "detour DNS failover controller" detour >/dev/null
    fi
    # state_dir: overrides, incidents, last states, the admin token.
    chown detour:detour /var/lib/detour
    chmod 0750 /var/lib/detour
    # The config may hold webhook credentials: readable by group detour only.
    chgrp detour /etc/detour/detour.toml /etc/detour/zones/example.test.toml
    chmod 0640 /etc/detour/detour.toml /etc/detour/zones/example.test.toml
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload >/dev/null 2>&1 || true
    fi
    echo "detour: edit /etc/detour/detour.toml, then: systemctl enable --now detour"
fi
exit 0
EOF
cat >"$pkg/DEBIAN/postrm" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = "purge" ]; then
    rm -rf /var/lib/detour
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || true
fi
exit 0
EOF
chmod 0755 "$pkg/DEBIAN/postinst" "$pkg/DEBIAN/postrm"

install -d "$out"
deb="$out/detour_${version}_${arch}.deb"
dpkg-deb --root-owner-group --build "$pkg" "$deb" >/dev/null
echo "$deb"
