# Sourced by pull.sh and image_files.sh after common.sh: a 10k-file image
# (busybox-static, then /usr/include and /usr/lib/python3.11 of this
# machine as two more layers: about 10,300 files, 185 MB) built by
# `podman build` in a podman store of its own ($W/build), pushed by
# `podman push` to Debian's docker-registry on 127.0.0.1:$PORT (no auth),
# everything as the unprivileged account. Sets W, PORT, IMAGE
# (127.0.0.1:PORT/bench/files:1), PODMAN_ENV (podman's environment),
# podman_store and a cleanup trap.
W="$STAGE/image"
mkdir -p "$W/rootfs/bin" "$W/rootfs/etc" "$W/rootfs/tmp" "$W/rootfs/proc" "$W/rootfs/dev" "$W/xdg" "$W/ctx" "$W/reg"
cp /bin/busybox "$W/rootfs/bin/"
for app in sh true cat find wc xargs; do ln -s busybox "$W/rootfs/bin/$app"; done
chmod 1777 "$W/rootfs/tmp"; chmod 700 "$W/xdg"
cp -a /usr/include "$W/ctx/include"
cp -a /usr/lib/python3.11 "$W/ctx/python3.11"
printf 'FROM localhost/bench-base:1\nCOPY include /usr/include\nCOPY python3.11 /usr/lib/python3.11\n' > "$W/ctx/Containerfile"
printf '[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n' > "$W/containers.conf"
PODMAN_ENV=(env CONTAINERS_CONF="$W/containers.conf"
  XDG_RUNTIME_DIR="$W/xdg" XDG_CONFIG_HOME="$W/config" XDG_DATA_HOME="$W/data")
# podman_store STORE [MOUNT_PROGRAM]: PODMAN, the command line of a podman
# with its own graph root $W/STORE (native overlay, or MOUNT_PROGRAM).
podman_store() {
  PODMAN="podman --storage-driver overlay --root $W/$1 --runroot $W/$1.run"
  if [ -n "${2:-}" ]; then PODMAN+=" --storage-opt overlay.mount_program=$2"; fi
}
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
IMAGE="127.0.0.1:$PORT/bench/files:1"
printf 'version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:%s\n' "$W/reg/storage" "$PORT" > "$W/reg/config.yml"
if [ "$(id -u)" -eq 0 ]; then chown -R "$TEST_USER" "$W"; fi
STORES=()
image_cleanup() {
  [ -n "${REG_PID:-}" ] && kill "$REG_PID" 2>/dev/null || true
  for s in "${STORES[@]}"; do
    podman_store "$s"
    "${RUNAS[@]}" "${PODMAN_ENV[@]}" $PODMAN unshare rm -rf "$W/$s" "$W/$s.run" >/dev/null 2>&1 || true
  done
  if [ -f "$W/xdg/libpod/tmp/pause.pid" ]; then kill -9 "$(cat "$W/xdg/libpod/tmp/pause.pid")" 2>/dev/null || true; fi
  for _ in $(seq 100); do pgrep -u "$TEST_USER" >/dev/null || break; sleep 0.1; done
  "${RUNAS[@]}" chmod -R u+rwX "$W" 2>/dev/null || true
  rm -rf "$STAGE"
}
trap image_cleanup EXIT
"${RUNAS[@]}" docker-registry serve "$W/reg/config.yml" > "$W/reg/log" 2>&1 &
REG_PID=$!
for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null && break; sleep 0.05; done
STORES+=(build)
podman_store build
"${RUNAS[@]}" tar --owner=0 --group=0 -C "$W/rootfs" -cf "$W/rootfs.tar" .
"${RUNAS[@]}" "${PODMAN_ENV[@]}" $PODMAN import -q "$W/rootfs.tar" localhost/bench-base:1 >/dev/null
"${RUNAS[@]}" "${PODMAN_ENV[@]}" $PODMAN build -q -t localhost/bench/files:1 "$W/ctx" >/dev/null
"${RUNAS[@]}" "${PODMAN_ENV[@]}" $PODMAN push -q --tls-verify=false localhost/bench/files:1 "docker://$IMAGE"
"${RUNAS[@]}" "${PODMAN_ENV[@]}" $PODMAN info --format 'podman {{.Version.Version}}, runc, cgroupfs' 2>/dev/null
echo "image: $IMAGE, $(du -sb "$W/reg/storage" | cut -f1) bytes in the registry (gzip), 3 layers"
