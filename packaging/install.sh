#!/bin/sh
# Install ecrcred on a node without dpkg (Amazon Linux 2023, an image build, anything with a
# POSIX shell), in the same layout as the Debian package (packaging/deb/build-deb runs this
# script to lay out the package's files, so the two cannot drift apart):
#
#   <prefix>/lib/ecrcred/                 the artifact: the ecrcred executable and _internal/
#   <prefix>/bin/ecrcred                  -> ../lib/ecrcred/ecrcred
#   <prefix>/libexec/kubernetes/kubelet-plugins/credential-provider/exec/ecrcred
#                                         -> ../../../../../lib/ecrcred/ecrcred (the kubelet's
#                                            --image-credential-provider-bin-dir)
#   /etc/ecrcred/config.yaml              ECR only, with commented examples (yours is never
#   /etc/kubernetes/ecrcred/provider-config.yaml, provider-config-pod-identity.yaml
#                                          overwritten: a changed shipped file goes to *.new)
#   /lib/systemd/system/ecrcred-sandbox.service, ecrcred-sandbox-watch.service,
#                     ecrcred-auth-file.service (CRI-O and cri-dockerd nodes; README)
#                                         (/etc/systemd/system when --prefix is not /usr)
#   /var/lib/ecrcred/cache                the token cache, 0700
#
# Usage:
#   install.sh [--root DIR] [--prefix DIR] ARTIFACT     ARTIFACT: ecrcred-<v>-linux-<arch>.tar.gz
#                                                       or the unpacked ecrcred/ directory
#   ecrcred/install.sh [--root DIR] [--prefix DIR]      the copy inside the unpacked tarball
#                                                       installs the artifact it sits in
#
# The tarball is the whole bundle (build/pack): the artifact, this script, and share/ with the
# units and provider configs. Without share/ (an artifact folder from an older build) they are
# looked for beside this script, as in the repository's packaging/.
#   install.sh [--root DIR] [--prefix DIR] --uninstall [--purge]
#
# Running it again gives the same tree. --uninstall removes the executable, the links and the
# units and keeps /etc and the cache, as `dpkg --remove` does; --purge removes those too.
# --files-only lays out the files and nothing else (no cache directory, no systemctl, no
# hints): how build-deb stages the package. systemctl runs only when --root is / and systemd
# is running. Relative symlinks resolve inside --root as on the node itself.
set -eu
umask 022  # the tree is the same whatever umask the caller has

prog=install.sh
usage="usage: $prog [--root DIR] [--prefix DIR] [--files-only] [ARTIFACT(.tar.gz|dir)] | $prog [--root DIR] [--prefix DIR] --uninstall [--purge]"
UNITS="ecrcred-sandbox.service ecrcred-sandbox-watch.service"
# Installed with the others, but for a CRI-O or cri-dockerd node only: never in the sandbox hint.
AUTH_UNITS="ecrcred-auth-file.service"
PROVIDER_CONFIGS="provider-config.yaml provider-config-pod-identity.yaml"
KUBELET_BIN_DIR=libexec/kubernetes/kubelet-plugins/credential-provider/exec

die() { echo "$prog: error: $*" >&2; exit 1; }
bad_usage() { echo "$prog: error: $*; $usage" >&2; exit 2; }
note() { echo "$prog: $*" >&2; }

root=/ prefix=/usr artifact="" action=install purge=0 files_only=0 src=""
while [ $# -gt 0 ]; do
  case "$1" in
    --root) [ $# -ge 2 ] || bad_usage "--root needs a directory"; root=$2; shift ;;
    --root=*) root=${1#--root=} ;;
    --prefix) [ $# -ge 2 ] || bad_usage "--prefix needs a directory"; prefix=$2; shift ;;
    --prefix=*) prefix=${1#--prefix=} ;;
    --uninstall) action=uninstall ;;
    --purge) action=uninstall purge=1 ;;
    --files-only) files_only=1 ;;
    -h|--help) echo "$usage"; exit 0 ;;
    -*) bad_usage "unknown option $1" ;;
    *) [ -z "$artifact" ] || bad_usage "more than one artifact given ($artifact, $1)"; artifact=$1 ;;
  esac
  shift
done

case "$prefix" in /*) ;; *) bad_usage "--prefix must be an absolute path, not $prefix" ;; esac
prefix=$(printf '%s\n' "$prefix" | sed 's://*:/:g; s:/$::')
[ -n "$prefix" ] || bad_usage "--prefix / is not supported; use /usr"
[ -d "$root" ] || die "root directory $root does not exist"
root=$(cd "$root" && pwd -P)
# every installed path is "$R/..."; R is empty for the live system
if [ "$root" = / ]; then R=""; else R=$root; fi

libdir=$R$prefix/lib/ecrcred
binlink=$R$prefix/bin/ecrcred
kubeletlink=$R$prefix/$KUBELET_BIN_DIR/ecrcred
if [ "$prefix" = /usr ]; then unitdir=$R/lib/systemd/system; else unitdir=$R/etc/systemd/system; fi
confdir=$R/etc/ecrcred
providerdir=$R/etc/kubernetes/ecrcred
statedir=$R/var/lib/ecrcred

live_systemd() { [ -z "$R" ] && [ "$files_only" = 0 ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; }

# Files dpkg owns are dpkg's: mixing the two installers would leave dpkg's database wrong.
if [ -f "$R/var/lib/dpkg/status" ] && awk '
    /^Package: ecrcred$/ { pkg = 1; next }
    /^$/ { pkg = 0 }
    pkg && /^Status: .* installed$/ { found = 1 }
    END { exit !found }' "$R/var/lib/dpkg/status"; then
  die "ecrcred is installed as a Debian package in ${R:-/}; use dpkg or apt to change it"
fi

same() {  # same FILE FILE: byte-identical (cmp is not on every minimal image)
  if command -v cmp >/dev/null 2>&1; then cmp -s "$1" "$2"
  else [ "$(cksum < "$1")" = "$(cksum < "$2")" ]; fi
}

# ln -s target link, replacing an older link but never a file someone else put there
link() {
  if [ -e "$2" ] && [ ! -L "$2" ]; then die "$2 exists and is not a symlink; move it away first"; fi
  mkdir -p "$(dirname "$2")"
  if [ -L "$2" ] && [ "$(readlink "$2")" = "$1" ]; then return; fi
  rm -f "$2"
  ln -s "$1" "$2"
}

unlink_ours() {  # remove a link only if it points into our lib dir
  if [ -L "$1" ]; then
    case "$(readlink "$1")" in */lib/ecrcred/ecrcred) rm -f "$1" ;; esac
  fi
}

# A configuration file the admin may have edited: installed when absent, left alone when it
# is already the shipped text, else kept and the shipped text written beside it as FILE.new.
install_conffile() {  # SRC DEST
  mkdir -p "$(dirname "$2")"
  if [ ! -e "$2" ]; then
    cp "$1" "$2.tmp.$$" && chmod 0644 "$2.tmp.$$" && mv -f "$2.tmp.$$" "$2"
  elif same "$1" "$2"; then
    rm -f "$2.new"
  elif [ -e "$2.new" ] && same "$1" "$2.new"; then
    note "kept your ${2#"$R"}; the shipped version is in ${2#"$R"}.new"
  else
    cp "$1" "$2.new" && chmod 0644 "$2.new"
    note "kept your ${2#"$R"}; the shipped version is in ${2#"$R"}.new"
  fi
}

# Where the files that are not the program are: in the bundle's share/ (build/pack), else beside
# this script, as in the repository (packaging/systemd/, the provider configs at the top).
here=$(cd "$(dirname "$0")" && pwd -P)
support() {  # support NAME -> path
  for candidate in "$src/share/$1" "$here/$1" "$here/systemd/$1" "$here/../$1"; do
    if [ -f "$candidate" ]; then echo "$candidate"; return; fi
  done
  die "cannot find $1 in $src/share/ or beside $here/$prog; use the whole release tarball (it carries share/)"
}

# Run from inside an unpacked bundle (ecrcred/install.sh) with no artifact named: that bundle.
if [ "$action" = install ] && [ -z "$artifact" ] && [ -f "$here/ecrcred" ] && [ -d "$here/_internal" ]; then
  artifact=$here
fi

work=""
cleanup() { if [ -n "$work" ]; then rm -rf "$work"; fi; }
trap cleanup EXIT
trap 'exit 130' INT TERM

write_default_config() {
  cat > "$1" <<'EOF'
# ecrcred's configuration: which registries get image-pull credentials from where.
#
# As shipped (no rules) ecrcred answers for Amazon ECR and ECR Public hosts only, with the
# node's AWS credentials. Add rules to make it the one credential source for every registry
# the node pulls from. `ecrcred get-credentials` (the kubelet plugin) and `ecrcred pull-sandbox`
# read this file; an edit is validated at the next execution, and a mistake is reported as one
# line naming this file and the field. The README's config section describes every field.
apiVersion: ecrcred.io/v1alpha1
kind: EcrcredConfig
registries: []

# Examples: replace `registries: []` above with a list like this one (the most specific
# match wins; ECR hosts need no rule).
#
# registries:
#   # Harbor with a robot account; the password lives in a file (or passwordEnv), never inline.
#   - match: ["harbor.corp.example"]
#     static:
#       username: robot$ci
#       passwordFile: /etc/ecrcred/secrets/harbor
#     cacheDuration: 5m
#   # Docker Hub through an ECR pull-through cache.
#   - match: ["docker.io"]
#     mirrorOf: 123456789012.dkr.ecr.us-west-2.amazonaws.com/docker-hub
#   # A custom domain in front of ECR, read through a role in another account.
#   - match: ["registry.corp.example"]
#     ecr:
#       account: "210987654321"
#       region: eu-west-1
#       roleArn: arn:aws:iam::210987654321:role/node-image-pull
#   # Whatever `docker login` left on the node, in the kubelet's own search order.
#   - match: ["quay.io", "ghcr.io"]
#     dockerConfig: {}
#   # A docker credential helper on PATH (docker-credential-gcloud get).
#   - match: ["*.pkg.dev", "gcr.io"]
#     credentialHelper:
#       name: gcloud
#       timeout: 5s
#
# Per-pod roles (with provider-config-pod-identity.yaml): the annotations that name the role,
# and what a pod that names none gets (node: the node's credentials; deny: nothing).
#
# podIdentity:
#   roleAnnotations: [eks.amazonaws.com/ecr-role-arn, eks.amazonaws.com/role-arn]
#   fallback: node
EOF
}

do_install() {
  [ -n "$artifact" ] || bad_usage "no artifact given"
  [ -e "$artifact" ] || die "artifact $artifact does not exist"
  work=$(mktemp -d "${TMPDIR:-/tmp}/ecrcred-install.XXXXXX")
  if [ -d "$artifact" ]; then
    src=$artifact
  else
    case "$artifact" in
      *.tar.gz|*.tgz) ;;
      *) die "$artifact is neither a .tar.gz nor a directory" ;;
    esac
    mkdir "$work/unpacked"
    gzip -dc "$artifact" 2>/dev/null | tar -xf - -C "$work/unpacked" 2>/dev/null \
      || die "$artifact is not a readable .tar.gz"
    src=$work/unpacked/ecrcred
  fi
  if [ ! -f "$src/ecrcred" ] || [ ! -x "$src/ecrcred" ] || [ ! -d "$src/_internal" ]; then
    die "$artifact is not an ecrcred artifact (expected ecrcred/ecrcred and ecrcred/_internal/)"
  fi
  [ "$(head -c 4 "$src/ecrcred" | od -An -c | tr -d ' \n')" = '177ELF' ] \
    || die "$artifact is not an ecrcred artifact ($src/ecrcred is not an executable program)"

  if [ -z "$R" ] && [ "$files_only" = 0 ] && ! "$src/ecrcred" --version >/dev/null 2>"$work/run.err"; then
    die "$artifact does not run on this machine: $(grep -v '^$' "$work/run.err" | head -1)"
  fi

  mkdir "$work/support"
  write_default_config "$work/support/config.yaml"
  for name in $PROVIDER_CONFIGS; do
    from=$(support "$name")
    cp "$from" "$work/support/$name"
  done
  for name in $UNITS $AUTH_UNITS; do
    from=$(support "$name")
    # the units name /usr/bin/ecrcred; another prefix has its own bin dir
    sed "s:/usr/bin/ecrcred:$prefix/bin/ecrcred:g" "$from" > "$work/support/$name"
  done

  # The artifact: copied beside the old one, then swapped in, so an execution by the kubelet
  # during an upgrade sees either version whole.
  mkdir -p "$R$prefix/lib"
  new=$R$prefix/lib/.ecrcred.new.$$ old=$R$prefix/lib/.ecrcred.old.$$
  rm -rf "$new" "$old"
  cp -RP "$src" "$new"
  rm -rf "$new/.stamp" "$new/install.sh" "$new/share"  # the build's bookkeeping; the bundle's extras
  find "$new" -type d -exec chmod 0755 {} +
  find "$new" -type f -perm -u+x -exec chmod 0755 {} +
  find "$new" -type f ! -perm -u+x -exec chmod 0644 {} +
  if [ "$(id -u)" = 0 ]; then chown -R -h 0:0 "$new"; fi
  if [ -e "$libdir" ]; then mv "$libdir" "$old"; fi
  mv "$new" "$libdir"
  rm -rf "$old"

  link ../lib/ecrcred/ecrcred "$binlink"
  link ../../../../../lib/ecrcred/ecrcred "$kubeletlink"

  install_conffile "$work/support/config.yaml" "$confdir/config.yaml"
  for name in $PROVIDER_CONFIGS; do install_conffile "$work/support/$name" "$providerdir/$name"; done

  mkdir -p "$unitdir"
  for name in $UNITS $AUTH_UNITS; do
    if [ ! -f "$unitdir/$name" ] || ! same "$work/support/$name" "$unitdir/$name"; then
      cp "$work/support/$name" "$unitdir/$name.tmp.$$"
      chmod 0644 "$unitdir/$name.tmp.$$"
      mv -f "$unitdir/$name.tmp.$$" "$unitdir/$name"
    fi
  done

  [ "$files_only" = 0 ] || return 0
  mkdir -p "$statedir/cache"
  chmod 0700 "$statedir" "$statedir/cache"
  if [ "$(id -u)" = 0 ]; then chown 0:0 "$statedir" "$statedir/cache"; fi
  if live_systemd; then systemctl daemon-reload; fi
  note "installed ecrcred into ${R:-/} ($("$libdir/ecrcred" --version 2>/dev/null || echo "$libdir"))"
  note "kubelet flags: --image-credential-provider-config=/etc/kubernetes/ecrcred/provider-config.yaml --image-credential-provider-bin-dir=$prefix/$KUBELET_BIN_DIR"
  if [ -z "$R" ]; then note "sandbox image: systemctl enable --now $UNITS"
  else note "sandbox image: systemctl --root=$R enable $UNITS"
  fi
  note "CRI-O or cri-dockerd instead of containerd: $AUTH_UNITS (README: CRI-O and cri-dockerd)"
}

do_uninstall() {
  [ -z "$artifact" ] || bad_usage "--uninstall takes no artifact"
  if live_systemd; then
    # shellcheck disable=SC2086 # UNITS is a list
    systemctl disable --now $UNITS $AUTH_UNITS >/dev/null 2>&1 || true
  fi
  for name in $UNITS $AUTH_UNITS; do
    rm -f "$unitdir/$name" "$R"/etc/systemd/system/*.wants/"$name"
  done
  unlink_ours "$binlink"
  unlink_ours "$kubeletlink"
  # the kubelet plugin directories, when nothing else is in them
  dir=$(dirname "$kubeletlink")
  while [ "$dir" != "$R$prefix/libexec" ] && rmdir "$dir" 2>/dev/null; do dir=$(dirname "$dir"); done
  rm -rf "$libdir" "$R$prefix"/lib/.ecrcred.new.* "$R$prefix"/lib/.ecrcred.old.*
  if [ "$purge" = 1 ]; then
    rm -rf "$confdir" "$statedir"
    for name in $PROVIDER_CONFIGS; do rm -f "$providerdir/$name" "$providerdir/$name.new"; done
    rmdir "$providerdir" 2>/dev/null || true
  fi
  if live_systemd; then systemctl daemon-reload; fi
  if [ "$purge" = 1 ]; then note "removed ecrcred, its configuration and its cache from ${R:-/}"
  else note "removed ecrcred from ${R:-/} (kept /etc/ecrcred, /etc/kubernetes/ecrcred and the cache; --purge removes them)"
  fi
}

if [ "$action" = install ]; then do_install; else do_uninstall; fi
