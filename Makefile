# burrow: the two commands in README.md are `make demo` and `make test`.
CARGO ?= cargo

.PHONY: demo test bench build vm-init install clean

# burrow's guest init for `burrow run --vm`, linked statically (it runs
# alone in the guest's initramfs).
VM_INIT = target/x86_64-unknown-linux-gnu/release/burrow-vm-init

## Build burrow and run it on its built-in default: the host's / under a
## private writable layer, fresh /proc, /dev and /tmp, every namespace new,
## the caller as root inside; as an unprivileged account (as root, the one
## `make test` uses), since that is burrow's real case.
demo:
	bash scripts/setup-host.sh
	$(CARGO) build --release --quiet -p burrow-sandbox
	bash scripts/demo.sh target/release/burrow

## Lint, build and run every test as an unprivileged account.
test:
	bash scripts/run-tests.sh

## Start-up beside bubblewrap, then burrowfs beside kernel overlayfs and
## fuse-overlayfs (medians of interleaved rounds), and burrowfs' memory.
## Minutes, not seconds.
bench:
	bash benches/startup.sh
	bash benches/seccomp.sh
	bash benches/unionfs.sh
	bash benches/readbig.sh
	bash benches/readsmall.sh
	bash benches/coldread.sh
	bash benches/roundtrip.sh
	if [ "$$(id -u)" -eq 0 ]; then bash benches/passthrough.sh; bash benches/timeline.sh; fi
	bash benches/memory.sh
	bash benches/image.sh
	bash benches/pull.sh
	bash benches/image_files.sh
	bash benches/runtime.sh
	bash benches/podman_runtime.sh
	bash benches/net.sh
	bash benches/vm.sh
	bash benches/squashfs.sh

build: vm-init
	$(CARGO) build --release -p burrow-sandbox -p burrow-unionfs -p burrow-netstack

vm-init:
	RUSTFLAGS="-C target-feature=+crt-static" $(CARGO) build --release --quiet \
	  -p burrow-vm-init --target x86_64-unknown-linux-gnu

PREFIX ?= /usr/local
## burrow, and burrowfs where mount.fuse3 finds it (`mount -t fuse.burrowfs`).
install: build
	install -D -m 0755 target/release/burrow $(DESTDIR)$(PREFIX)/bin/burrow
	install -D -m 0755 target/release/burrowfs $(DESTDIR)$(PREFIX)/bin/burrowfs
	install -D -m 0755 target/release/burrow-net $(DESTDIR)$(PREFIX)/bin/burrow-net
	install -D -m 0755 $(VM_INIT) $(DESTDIR)$(PREFIX)/lib/burrow/burrow-vm-init

clean:
	$(CARGO) clean
