#!/usr/bin/env bash
# Builds the container images from what is on this machine; nothing is pulled (no registry is needed):
#   ferrokv:latest             FROM scratch: ferrokv (also as /usr/local/bin/etcd) and the libraries `ldd` names
#   ferrokv-prometheus:latest  with --prometheus: Debian's prometheus binary the same way, for docker/compose.yml;
#                              it also stages etcd's Grafana dashboard (from Debian's etcd-server package) into
#                              docker/grafana/dashboards/ for the compose file's Grafana.
#
# Usage: docker/build.sh [--binary PATH] [--tag TAG] [--prometheus] [--prometheus-tag TAG]
# Without --binary, target/release/ferrokv is built (cargo build --release) if it is not there.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
binary="" tag="ferrokv:latest" prometheus=0 ptag="ferrokv-prometheus:latest"
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary="$2"; shift 2 ;;
    --tag) tag="$2"; shift 2 ;;
    --prometheus) prometheus=1; shift ;;
    --prometheus-tag) ptag="$2"; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "docker/build.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
command -v docker >/dev/null || { echo "docker/build.sh: no docker command on this machine" >&2; exit 1; }
if [ -z "$binary" ]; then
  binary="$root/target/release/ferrokv"
  [ -x "$binary" ] || (cd "$root" && cargo build --release -p server --bin ferrokv)
fi
[ -x "$binary" ] || { echo "docker/build.sh: $binary is not an executable" >&2; exit 1; }

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT

# Copies executable $1 to $2 (a path in the image) under $stage/rootfs, with every library `ldd` names at the path
# the dynamic loader will look for it.
put_binary() {
  local src="$1" dst="$stage/rootfs$2"
  mkdir -p "$(dirname "$dst")"
  cp -L "$src" "$dst"
  chmod 0755 "$dst"
  # Lines are "name => /path (0x…)" or "/path (0x…)" (the loader); linux-vdso has no file.
  ldd "$src" | awk '/=>/ { if ($3 ~ /^\//) print $3; next } $1 ~ /^\// { print $1 }' | while read -r lib; do
    mkdir -p "$stage/rootfs$(dirname "$lib")"
    cp -L "$lib" "$stage/rootfs$lib"
  done
}

# The files every image here needs: users (root, etcd 65532, nobody 65534), name lookup, a writable /tmp.
base_files() {
  mkdir -p "$stage/rootfs/etc" "$stage/rootfs/tmp" "$stage/data"
  chmod 1777 "$stage/rootfs/tmp"
  printf 'root:x:0:0:root:/root:/sbin/nologin\netcd:x:65532:65532:etcd:/var/lib/etcd:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n' >"$stage/rootfs/etc/passwd"
  printf 'root:x:0:\netcd:x:65532:\nnogroup:x:65534:\n' >"$stage/rootfs/etc/group"
  printf 'hosts: files dns\n' >"$stage/rootfs/etc/nsswitch.conf"
}

build() { # $1 tag, $2 Dockerfile
  cp "$2" "$stage/Dockerfile"
  # The classic builder: it needs no buildx plugin and pulls nothing for FROM scratch.
  DOCKER_BUILDKIT=0 docker build -q -t "$1" "$stage" >/dev/null 2>"$stage/build.err" || { cat "$stage/build.err" >&2; exit 1; }
  echo "built $1 ($(docker image inspect -f '{{.Size}}' "$1") bytes)"
}

base_files
put_binary "$binary" /usr/local/bin/ferrokv
ln -s ferrokv "$stage/rootfs/usr/local/bin/etcd"
build "$tag" "$here/Dockerfile"

if [ "$prometheus" = 1 ]; then
  [ -x /usr/bin/prometheus ] || bash "$root/scripts/apt-install.sh" prometheus
  rm -rf "$stage/rootfs" "$stage/data"
  base_files
  put_binary /usr/bin/prometheus /usr/bin/prometheus
  build "$ptag" "$here/prometheus.Dockerfile"
  # etcd 3.4's dashboard, as Debian ships it (not kept in this repository: it is etcd's file).
  dash=/usr/share/doc/etcd-server/op-guide/grafana.json.gz
  [ -f "$dash" ] || bash "$root/scripts/apt-install.sh" etcd-server
  mkdir -p "$here/grafana/dashboards"
  # Debian ships it as the mixin's bundle, {"etcd.json": <dashboard>}; Grafana's file provider wants the dashboard.
  gzip -dc "$dash" | python3 -c '
import json, sys
bundle = json.load(sys.stdin)
dashboard = bundle.get("etcd.json", bundle)
dashboard["id"] = None
json.dump(dashboard, sys.stdout, indent=1)
' >"$here/grafana/dashboards/etcd.json"
  echo "staged $here/grafana/dashboards/etcd.json"
fi
