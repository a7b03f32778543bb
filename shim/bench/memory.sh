#!/bin/bash
# Memory of idle shims under one private containerd 1.6: ours (the shim binary
# given, installed as containerd-shim-ocirun-v2, running ocirun) next to
# Debian's containerd-shim-runc-v2, N idle busybox containers each. Figures are
# averages per shim from /proc/PID/smaps_rollup (USS = Private_Clean+Private_Dirty).
#   usage: memory.sh SHIM_BINARY [N]
set -euo pipefail
shim=$(realpath "${1:?usage: memory.sh SHIM_BINARY [N]}")
n=${2:-20}
work=$(mktemp -d /tmp/shim-bench.XXXXXX)
sock=$work/c.sock
ctr="ctr -a $sock"
cd_pid=""

cleanup() {
  set +e
  if [ -n "$cd_pid" ]; then
    for id in $($ctr task ls -q 2>/dev/null); do $ctr task kill -s KILL "$id" >/dev/null 2>&1; done
    sleep 1
    for id in $($ctr task ls -q 2>/dev/null); do $ctr task rm -f "$id" >/dev/null 2>&1; done
    for id in $($ctr c ls -q 2>/dev/null); do $ctr c rm "$id" >/dev/null 2>&1; done
    kill -9 "$cd_pid" 2>/dev/null; wait "$cd_pid" 2>/dev/null
  fi
  for p in $(shim_pids any); do kill -9 "$p" 2>/dev/null; done
  grep -o " $work[^ ]*" /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# Shims of this containerd only: their command line names its socket.
shim_pids() {
  for d in /proc/[0-9]*; do
    grep -qaF -- "$sock" "$d/cmdline" 2>/dev/null || continue
    exe=$(readlink "$d/exe" 2>/dev/null) || continue
    case "$1:$exe" in
      ours:"$shim"|runc:*/containerd-shim-runc-v2|any:"$shim"|any:*/containerd-shim-runc-v2) echo "${d#/proc/}";;
    esac
  done
}

# A one-layer OCI image of static busybox.
img=$work/img; mkdir -p "$img/rootfs/bin" "$img/blobs/sha256"
cp "$(command -v busybox)" "$img/rootfs/bin/busybox"
for a in sh sleep; do ln -s busybox "$img/rootfs/bin/$a"; done
tar -C "$img/rootfs" -cf "$img/layer.tar" .
blob() { local d; d=$(sha256sum "$1" | cut -d' ' -f1); cp "$1" "$img/blobs/sha256/$d"; echo "$d"; }
layer=$(blob "$img/layer.tar")
printf '{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' "$layer" > "$img/config.json"
config=$(blob "$img/config.json")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%d}]}' \
  "$config" "$(stat -c%s "$img/config.json")" "$layer" "$(stat -c%s "$img/layer.tar")" > "$img/manifest.json"
manifest=$(blob "$img/manifest.json")
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%d,"annotations":{"io.containerd.image.name":"docker.io/library/bench:latest"}}]}' \
  "$manifest" "$(stat -c%s "$img/manifest.json")" > "$img/index.json"
echo '{"imageLayoutVersion":"1.0.0"}' > "$img/oci-layout"
tar -C "$img" -cf "$work/image.tar" oci-layout index.json blobs

mkdir -p "$work/bin"; ln -s "$shim" "$work/bin/containerd-shim-ocirun-v2"
cat > "$work/config.toml" <<TOML
version = 2
root = "$work/root"
state = "$work/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$sock"
[ttrpc]
  address = "$sock.ttrpc"
TOML
PATH=$work/bin:$PATH containerd --config "$work/config.toml" >"$work/containerd.log" 2>&1 &
cd_pid=$!
for _ in $(seq 100); do $ctr version >/dev/null 2>&1 && break; sleep 0.1; done
$ctr images import "$work/image.tar" >/dev/null

for i in $(seq "$n"); do
  $ctr run -d --runtime io.containerd.ocirun.v2 docker.io/library/bench:latest "ours-$i" sleep 100000
  $ctr run -d --runtime io.containerd.runc.v2 docker.io/library/bench:latest "runc-$i" sleep 100000
done
sleep 2

report() {
  local kind=$1 label=$2
  shim_pids "$kind" | while read -r p; do
    awk -v t="$(awk '/^Threads:/{print $2}' "/proc/$p/status")" '
      /^Rss:/{r=$2} /^Pss:/{s=$2} /^Private_(Clean|Dirty):/{u+=$2}
      END{print r, s, u, t}' "/proc/$p/smaps_rollup"
  done | awk -v label="$label" '
    {r+=$1; s+=$2; u+=$3; t+=$4; c++}
    END{ if (c==0) {print label ": no shims found"; exit 1}
         printf "%-28s shims=%d  VmRSS %.2f MiB  Pss %.2f MiB  USS %.2f MiB  threads %.1f\n",
                label, c, r/c/1024, s/c/1024, u/c/1024, t/c }'
}
echo "idle shims, $n containers each, averages per shim:"
report ours "ours ($(basename "$shim"))"
report runc "containerd-shim-runc-v2"
