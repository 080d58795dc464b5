#!/usr/bin/env bash
# `make demo`: burrow on its built-in default, run as an unprivileged
# account (as root, the burrow-test account that `make test` uses, made by
# setup-host.sh): the host's / under a private writable layer, fresh /proc,
# /dev and /tmp, every namespace new, the caller as root inside.
set -euo pipefail
cd "$(dirname "$0")/.."
BURROW=${1:-target/release/burrow}
RUNAS=()
if [ "$(id -u)" -eq 0 ]; then
  bash scripts/setup-host.sh --user
  user=${BURROW_TEST_USER:-burrow-test}
  RUNAS=(runuser -u "$user" --)
  # Where the account can execute it.
  stage=$(mktemp -d /tmp/burrow-demo.XXXXXX)
  trap 'rm -rf "$stage"' EXIT
  install -m 0755 "$BURROW" "$stage/burrow"
  chmod 755 "$stage"
  BURROW=$stage/burrow
fi
echo "host: running as $("${RUNAS[@]}" id -un) (uid $("${RUNAS[@]}" id -u)), without root"
cd /
"${RUNAS[@]}" "$BURROW" run -- sh -c '
  echo "inside: $(id)"
  echo "pid $$ on $(hostname), namespaces: $(readlink /proc/self/ns/pid) $(readlink /proc/self/ns/net)"
  echo "network interfaces: $(cut -d: -f1 /proc/net/dev | tail -n +3 | tr -d " ")"
  echo "capabilities: $(grep CapEff /proc/self/status | cut -f2) (podman'"'"'s default set), no_new_privs $(grep NoNewPrivs /proc/self/status | cut -f2), seccomp filters $(grep Seccomp_filters /proc/self/status | cut -f2)"
  echo "/etc is $(stat -c %U:%G /etc) inside"
  echo demo > /etc/burrow-demo && echo "wrote /etc/burrow-demo: $(stat -c "%U:%G %a" /etc/burrow-demo) (into the union'"'"'s private upper layer)"
  head -c 1 /etc/shadow- >/dev/null 2>&1 || echo "the host'"'"'s unreadable files stay unreadable: $(head -c 1 /etc/shadow- 2>&1 | sed "s/^head: //")"
  echo scratch > /tmp/demo && echo "/tmp is a private tmpfs"'
test ! -e /etc/burrow-demo && echo "host: /etc/burrow-demo does not exist, the host is untouched"
