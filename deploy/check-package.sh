#!/usr/bin/env bash
# check-package.sh DEB - checks a package deploy/package.sh built: its metadata and files
# (dpkg-deb --info/--contents), that the packaged config and zone pass `detour check` as
# installed, that the man page renders, and lintian's verdict where lintian is installed
# (errors fail; warnings are printed).
set -euo pipefail
deb="${1:?usage: deploy/check-package.sh DEB}"
dpkg-deb --info "$deb" >/dev/null
dpkg-deb --field "$deb" Package Version Architecture Depends
contents="$(dpkg-deb --contents "$deb" | awk '{print $6}')"
for want in ./usr/bin/detour ./lib/systemd/system/detour.service ./etc/detour/detour.toml \
    ./etc/detour/zones/example.test.toml ./usr/share/man/man1/detour.1.gz \
    ./usr/share/man/man1/detour-override-set.1.gz \
    ./usr/share/bash-completion/completions/detour ./usr/share/zsh/vendor-completions/_detour \
    ./usr/share/fish/vendor_completions.d/detour.fish ./usr/share/doc/detour/copyright; do
  grep -qx "$want" <<<"$contents" || { echo "missing from the package: $want" >&2; exit 1; }
done
[[ "$(dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles)" == $'/etc/detour/detour.toml\n/etc/detour/zones/example.test.toml' ]] \
  || { echo "conffiles are not the config and the zone" >&2; exit 1; }
tmp="$(mktemp -d /tmp/detour-deb-check.XXXXXX)"
trap 'rm -rf "$tmp"' EXIT
dpkg-deb -x "$deb" "$tmp"
grep -q 'ExecStart=/usr/bin/detour run --config /etc/detour/detour.toml' "$tmp/lib/systemd/system/detour.service"
grep -q '^Type=notify' "$tmp/lib/systemd/system/detour.service"
# The packaged config, as installed (zones relative to it): valid.
"$tmp/usr/bin/detour" check --config "$tmp/etc/detour/detour.toml" >/dev/null
if command -v man >/dev/null; then
  man -l "$tmp/usr/share/man/man1/detour-override-set.1.gz" 2>/dev/null | grep -q -- '--until'
fi
if command -v lintian >/dev/null; then
  # Errors fail the check; warnings and notes are printed for a person to judge.
  out="$(lintian --tag-display-limit 0 "$deb" 2>&1 || true)"
  [[ -z "$out" ]] || echo "$out"
  if grep -q '^E:' <<<"$out"; then echo "lintian found errors" >&2; exit 1; fi
fi
echo "package ok: $deb"
