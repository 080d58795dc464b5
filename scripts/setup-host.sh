#!/usr/bin/env bash
# Prepares this machine for building and testing burrow. Idempotent.
#   scripts/setup-host.sh          Debian packages only
#   scripts/setup-host.sh --vm     also the guest kernel for `burrow run --vm`
#   scripts/setup-host.sh --tests  also the guest kernel, the unprivileged
#                                  test account, its subordinate id ranges
#                                  and device modes
#   scripts/setup-host.sh --user   the account, ids and device modes only
# As root it installs; as another user it names what is missing and fails.
set -euo pipefail

PACKAGES=(
  uidmap          # newuidmap/newgidmap for subordinate id ranges
  fuse3           # fusermount3, mount.fuse3
  libfuse3-dev pkg-config libseccomp-dev
  bubblewrap fuse-overlayfs crun  # peers for benchmarks
  bc              # the shared union benchmark script
  hyperfine       # benchmark driver
  slirp4netns passt iperf3  # network peers and driver
  iproute2 util-linux bsdutils procps bash coreutils
  python3 python3-pip  # tests: escape attempts written in Python; pip inside the sandbox
  qemu-system-x86 busybox-static cpio  # burrow run --vm; the guest test harness (tests/guest)
  podman runc catatonit  # tests: burrowfs as podman's mount_program (runc: crun refuses hybrid cgroups; the tests name runc)
  containerd      # tests: burrow-runtime under containerd's runc shim (ctr run --runc-binary)
  skopeo docker-registry apache2-utils openssl  # tests: images from skopeo, a local registry with htpasswd or token auth
  umoci time      # benches/pull.sh: skopeo copy + umoci unpack --rootless beside burrow pull; peak RSS
  openmpi-bin libopenmpi-dev mpich libmpich-dev  # tests: MPI ranks each in a sandbox (burrow run --hpc), Open MPI and MPICH
  slurmctld slurmd slurm-client munge  # tests: a one-node Slurm cluster of the test's own runs jobs in sandboxes
  squashfs-tools squashfuse  # tests: squashfs images as layers (mksquashfs); benches: squashfuse_ll beside burrowfs
)
TEST_USER=${BURROW_TEST_USER:-burrow-test}
SUB_START=${BURROW_TEST_SUBID_START:-524288}
SUB_COUNT=65536

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing Debian packages: ${missing[*]}" >&2
    echo "setup: install them with: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The guest kernel of `burrow run --vm` and of the guest test harness,
# from Debian's packages, cached: the cloud kernel's image, the modules
# the test harness loads (modules/) and those burrow's guest init loads,
# with their load order (vm-modules/).
GUEST=/var/cache/burrow-guest
VM_MODULES="virtio_ring virtio virtio_mmio fuse virtiofs virtio_console failover net_failover virtio_net"
guest_kernel() {
  [ -s "$GUEST/vm-modules/order" ] && [ -s "$GUEST/vmlinuz" ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: no guest kernel in $GUEST: run this script as root once" >&2
    return 1
  fi
  echo "setup: fetching the guest kernel (linux-image-cloud-amd64) into $GUEST"
  mkdir -p "$GUEST/modules" "$GUEST/vm-modules"; chmod 755 "$GUEST"
  local image tmp m
  image=$(apt-cache depends linux-image-cloud-amd64 | sed -n 's/.*Depends: \(linux-image-[^ ]*\)/\1/p' | head -n 1)
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download -q "$image" >/dev/null 2>&1 && dpkg-deb -x ./*.deb x)
  cp "$tmp"/x/boot/vmlinuz-* "$GUEST/vmlinuz"
  find "$tmp/x/lib/modules" \( -name fuse.ko -o -name tun.ko \) -exec cp {} "$GUEST/modules/" \;
  for m in $VM_MODULES; do
    find "$tmp/x/lib/modules" -name "$m.ko" -exec cp {} "$GUEST/vm-modules/" \;
    [ -s "$GUEST/vm-modules/$m.ko" ] || { echo "setup: the guest kernel has no $m.ko" >&2; return 1; }
  done
  echo "$VM_MODULES" | tr ' ' '\n' > "$GUEST/vm-modules/order"
  rm -rf "$tmp"
  chmod -R a+rX "$GUEST"
}

case "${1:-}" in
  --vm) guest_kernel; exit 0 ;;
  --tests) guest_kernel || [ "$(id -u)" -ne 0 ] ;;
  --user) ;;  # the unprivileged account only (make demo)
  *) exit 0 ;;
esac

if [ "$(id -u)" -ne 0 ]; then
  # A developer running as themselves: the tests run as this user.
  grep -q "^$(id -un):" /etc/subuid 2>/dev/null ||
    echo "setup: note: no /etc/subuid range for $(id -un); subordinate-id tests will be SKIPPED" >&2
  exit 0
fi

if ! id -u "$TEST_USER" >/dev/null 2>&1; then
  useradd --create-home --shell /bin/bash --comment "burrow tests" "$TEST_USER"
fi
for f in /etc/subuid /etc/subgid; do
  touch "$f"
  grep -q "^$TEST_USER:" "$f" || echo "$TEST_USER:$SUB_START:$SUB_COUNT" >> "$f"
done
# The account's runtime directory, as pam_systemd would make it at login
# (the host-socket tests put a socket there, as the D-Bus session bus is).
uid=$(id -u "$TEST_USER")
install -d -m 0700 -o "$TEST_USER" -g "$(id -g "$TEST_USER")" "/run/user/$uid"
# Distributions ship these 0666; fresh VMs here may not.
for dev in /dev/fuse /dev/net/tun /dev/kvm; do
  [ -e "$dev" ] && chmod 0666 "$dev"
done
# The setuid bits the subordinate-id helpers need.
for h in /usr/bin/newuidmap /usr/bin/newgidmap; do
  [ -u "$h" ] || chmod u+s "$h"
done
exit 0
