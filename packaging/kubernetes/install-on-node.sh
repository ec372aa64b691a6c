#!/bin/sh
# Put the ecrcred artifact and its configs on a node. The DaemonSet's initContainer runs it with the
# node's paths mounted under /host; node bootstrap can run the same script with HOST_ROOT=/ and
# ECRCRED_SOURCE=<the unpacked tarball>, so both lay out the same host paths:
#
#   /opt/ecrcred/versions/<version>-<digest>/  the onedir artifact (ecrcred + _internal/); never
#                                              modified once it has its name
#   /opt/ecrcred/current -> versions/<id>      switched with one rename(2): an exec sees the old
#                                              version or the new one, never half of either
#   /opt/ecrcred/previous -> versions/<id>     the one current replaced, kept for processes still
#                                              running from it (and for a manual rollback)
#   /opt/ecrcred/bin/ecrcred -> ../current/ecrcred
#                                              what the kubelet runs, with
#                                              --image-credential-provider-bin-dir=/opt/ecrcred/bin
#   /etc/kubernetes/ecrcred/provider-config.yaml  installed only if absent
#   /etc/ecrcred/config.yaml                      installed only if absent
#   /var/lib/ecrcred/cache                        0700, the token cache
#
# Needs POSIX sh, coreutils and findutils only (cp, mv -T, ln, readlink, mkdir, chmod, rm, find,
# sort, sha256sum, cut, sync). Runs as root with every capability dropped: it only creates files
# as root in root-owned directories and changes modes of files it owns, so it needs neither
# CAP_CHOWN/CAP_FOWNER (it never copies ownership) nor CAP_DAC_OVERRIDE.
#
# Environment:
#   ECRCRED_SOURCE    the artifact directory to install (default /opt/ecrcred, the image's copy)
#   ECRCRED_DEFAULTS  a directory with provider-config.yaml and config.yaml to install where the
#                     node has none (default /etc/ecrcred-defaults, the ConfigMap); a missing or
#                     empty file is skipped
#   HOST_ROOT         where the node's / is mounted (default /host; / at node bootstrap)
set -eu
umask 022

src=${ECRCRED_SOURCE:-/opt/ecrcred}
defaults=${ECRCRED_DEFAULTS:-/etc/ecrcred-defaults}
root=${HOST_ROOT-/host}
root=${root%/}  # "/" becomes "", so "$root/opt" is "/opt"
opt=$root/opt/ecrcred

say() { printf 'ecrcred-install: %s\n' "$*"; }
die() { printf 'ecrcred-install: error: %s\n' "$*" >&2; exit 1; }

for tool in cp mv ln readlink mkdir chmod rm find sort sha256sum cut sync; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool not found; run this in an image with coreutils and findutils (the Dockerfile's Debian base)"
done
if [ ! -x "$src/ecrcred" ] || [ ! -d "$src/_internal" ]; then
  die "no onedir artifact at $src (ecrcred and _internal/); set ECRCRED_SOURCE or rebuild the image after build/build"
fi

# Refuse an artifact that cannot even start here (wrong architecture, missing libraries), before
# touching the node.
if ! banner=$("$src/ecrcred" version 2>&1); then
  die "$src/ecrcred does not run: $banner"
fi
mkdir -p "$opt/versions" "$opt/bin"
if [ "$(cd "$src" && pwd -P)" = "$(cd "$opt" && pwd -P)" ]; then
  die "ECRCRED_SOURCE $src is the install root itself; point it at the unpacked artifact"
fi

set -f
# shellcheck disable=SC2086  # split on purpose: "ecrcred 0.1.0 (pyinstaller onedir, ...)"
set -- $banner
set +f
version=${2:-unknown}
case $version in *[!A-Za-z0-9._+-]*) version=unknown ;; esac

# The version's name comes from its content: the same artifact is never copied twice, and any
# change (even a rebuild of the same version) gets a directory of its own.
# The release bundle's install.sh and share/ (build/pack) are not the program: left out of the
# name and of the copy.
digest=$(cd "$src" && find . \( -path ./install.sh -o -path ./share \) -prune -o \
    \( -type f -o -type l \) -print | LC_ALL=C sort | while IFS= read -r f; do
  if [ -L "$f" ]; then
    printf 'l %s %s\n' "$f" "$(readlink "$f")"
  else
    if [ -x "$f" ]; then mode=x; else mode=-; fi
    printf 'f %s %s %s\n' "$f" "$mode" "$(sha256sum <"$f" | cut -c1-64)"
  fi
done | sha256sum | cut -c1-12)
id=$version-$digest

# Leftovers of a run that was killed half-way: nothing refers to them.
rm -rf "$opt"/versions/.staging-* "$opt/.current.new" "$opt/.previous.new" "$opt/bin/.ecrcred.new"

if [ -d "$opt/versions/$id" ]; then
  say "kept /opt/ecrcred/versions/$id (already installed)"
else
  # Copy under a temporary name in the same directory (so the same filesystem), flush it, then
  # give it its real name with one rename.
  staging=$opt/versions/.staging-$id.$$
  cp -R "$src/." "$staging"  # "/.": the directory's content, even when $src is a symlink
  rm -rf "$staging/install.sh" "$staging/share"
  chmod -R u+rwX,go+rX,go-w "$staging"
  sync -f "$staging"
  mv -T "$staging" "$opt/versions/$id"
  say "installed /opt/ecrcred/versions/$id"
fi

was=$(readlink "$opt/current" 2>/dev/null || true)
if [ "$was" != "versions/$id" ]; then
  ln -s "versions/$id" "$opt/.current.new"
  mv -T "$opt/.current.new" "$opt/current"  # -T: replace the link, never move into its target
  if [ -n "$was" ]; then
    ln -s "$was" "$opt/.previous.new"
    mv -T "$opt/.previous.new" "$opt/previous"
  fi
  say "current is now versions/$id (was ${was:-none})"
else
  say "current is already versions/$id"
fi

if [ "$(readlink "$opt/bin/ecrcred" 2>/dev/null || true)" != ../current/ecrcred ]; then
  ln -s ../current/ecrcred "$opt/bin/.ecrcred.new"
  mv -T "$opt/bin/.ecrcred.new" "$opt/bin/ecrcred"
  say "linked /opt/ecrcred/bin/ecrcred -> ../current/ecrcred"
fi

# Keep current and previous; anything older has had a whole rollout to finish.
previous=$(readlink "$opt/previous" 2>/dev/null || true)
for dir in "$opt"/versions/*; do
  [ -d "$dir" ] || continue
  name=versions/${dir##*/}
  if [ "$name" != "versions/$id" ] && [ "$name" != "$previous" ]; then
    rm -rf "$dir"
    say "removed /opt/ecrcred/$name"
  fi
done
sync -f "$opt"

# $1: a default file, $2: its host path (under $root), $3: its mode. Never replaces what the node
# has: the new file appears with link(2), which fails if the name exists, even in a race.
install_if_absent() {
  if [ ! -s "$1" ]; then
    say "no default ${1##*/} to install"
    return 0
  fi
  dest=$root$2
  mkdir -p "${dest%/*}"
  rm -f "${dest%/*}/.${dest##*/}".new.*
  if [ -e "$dest" ] || [ -L "$dest" ]; then
    say "kept $2 (present; never overwritten)"
    return 0
  fi
  tmp=${dest%/*}/.${dest##*/}.new.$$
  cp "$1" "$tmp"
  chmod "$3" "$tmp"
  sync "$tmp"
  if ln "$tmp" "$dest" 2>/dev/null; then
    say "installed $2"
  else
    say "kept $2 (appeared meanwhile; never overwritten)"
  fi
  rm -f "$tmp"
}
install_if_absent "$defaults/provider-config.yaml" /etc/kubernetes/ecrcred/provider-config.yaml 0644
install_if_absent "$defaults/config.yaml" /etc/ecrcred/config.yaml 0644

mkdir -p "$root/var/lib/ecrcred/cache"
chmod 0700 "$root/var/lib/ecrcred" "$root/var/lib/ecrcred/cache"

say "kubelet flags: --image-credential-provider-bin-dir=/opt/ecrcred/bin" \
  "--image-credential-provider-config=/etc/kubernetes/ecrcred/provider-config.yaml"
