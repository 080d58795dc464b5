#!/usr/bin/env bash
# Boots a small Linux guest under QEMU with burrow's binaries and runs a
# test script in it as an unprivileged user (uid 1000) that owns a
# delegated cgroup v2 subtree. The guest's kernel comes from Debian's
# linux-image-cloud-amd64 (scripts/setup-host.sh --tests caches it in
# /var/cache/burrow-guest); busybox-static is its userland.
#   tests/guest/boot.sh BINDIR SCRIPT
# Prints what SCRIPT printed and exits with its status (125 when the guest
# did not report one).
set -euo pipefail
BINDIR=$1 SCRIPT=$2
CACHE=${BURROW_GUEST_CACHE:-/var/cache/burrow-guest}
HERE=$(cd "$(dirname "$0")" && pwd)
[ -r "$CACHE/vmlinuz" ] || { echo "boot.sh: no guest kernel in $CACHE (run scripts/setup-host.sh --tests)" >&2; exit 125; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/burrow-guest.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
R=$WORK/root
mkdir -p "$R"/{bin,sbin,etc,proc,sys,dev,tmp,root,home/user,newroot,modules,usr/bin,usr/sbin}
cp /bin/busybox "$R/bin/busybox"
# burrow's binaries and the shared libraries they need.
for b in burrow burrowfs burrow-net burrow-runtime; do
  [ -x "$BINDIR/$b" ] || continue
  # Without debug information: a tenth of the size to unpack in the guest.
  strip --strip-debug -o "$R/usr/bin/$b" "$BINDIR/$b" 2>/dev/null || cp "$BINDIR/$b" "$R/usr/bin/$b"
  for lib in $(ldd "$BINDIR/$b" | grep -o '/[^ ]*'); do
    mkdir -p "$R$(dirname "$lib")"; cp -L "$lib" "$R$lib"
  done
done
cp "$CACHE"/modules/*.ko "$R/modules/" 2>/dev/null || true
cp "$SCRIPT" "$R/test.sh"
cp "$HERE/init" "$R/init"
chmod 755 "$R/init" "$R/test.sh"
(cd "$R" && find . | cpio -o -H newc --quiet) > "$WORK/initrd"

ACCEL=${BURROW_GUEST_ACCEL:-tcg}  # stock kernels do not boot under the nested KVM here
# One guest at a time: two emulated guests on a small machine starve each
# other's timer calibration.
exec 9>"${TMPDIR:-/tmp}/burrow-guest.lock"
flock 9
# Under software emulation a loaded host can leave the kernel's timer
# calibration stuck: a guest that has not reached its init after
# BURROW_GUEST_WATCHDOG seconds is killed and booted again.
WATCHDOG=${BURROW_GUEST_WATCHDOG:-30}
# The guest's TSC under TCG is the host's: tell the kernel its frequency so
# that it calibrates nothing (as burrow's --vm does, which measures it; the
# host's "cpu MHz" is the TSC's where the TSC is invariant).
TSC_ARGS=""
if [ "$ACCEL" = tcg ] && grep -qw constant_tsc /proc/cpuinfo; then
  khz=$(awk -F: '/^cpu MHz/ { printf "%d", $2 * 1000; exit }' /proc/cpuinfo)
  [ -n "$khz" ] && [ "$khz" -gt 100000 ] && TSC_ARGS="tsc_early_khz=$khz tsc=reliable"
fi
for attempt in 1 2 3; do
  : > "$WORK/console"
  timeout "${BURROW_GUEST_TIMEOUT:-180}" qemu-system-x86_64 \
    -M microvm,x-option-roms=off,rtc=on -accel "$ACCEL" -cpu max -smp 2 -m 1024 \
    -nodefaults -no-user-config -nographic -serial stdio -no-reboot \
    -kernel "$CACHE/vmlinuz" -initrd "$WORK/initrd" \
    -append "console=ttyS0 ${BURROW_GUEST_KARGS:-quiet loglevel=0} no_timer_check $TSC_ARGS panic=-1 rdinit=/init" \
    < /dev/null > "$WORK/console" 2>&1 &
  vm=$!
  started=""
  for _ in $(seq $((WATCHDOG * 10))); do
    if grep -q '^BURROW-GUEST-START' "$WORK/console"; then started=1; break; fi
    kill -0 "$vm" 2>/dev/null || break
    sleep 0.1
  done
  if [ -n "$started" ] || ! kill -0 "$vm" 2>/dev/null; then
    wait "$vm" || true
    grep -q '^BURROW-GUEST-START' "$WORK/console" && break
  else
    kill "$vm" 2>/dev/null; wait "$vm" 2>/dev/null || true
  fi
  echo "boot.sh: the guest did not start (attempt $attempt)" >&2
done
# The script's output and status, between the init's markers.
sed -n '/^BURROW-GUEST-START/,/^BURROW-GUEST-END/p' "$WORK/console" | sed '1d;$d' | tr -d '\r'
rc=$(sed -n 's/^BURROW-GUEST-END \([0-9]*\).*/\1/p' "$WORK/console" | tr -d '\r' | head -n 1)
if [ -z "$rc" ]; then
  echo "boot.sh: the guest reported no result; its console said:" >&2
  tail -n 30 "$WORK/console" >&2
  exit 125
fi
exit "$rc"
