# Build, demo, test and benchmark entry points. Run as root on Debian 12:
#   make demo   builds everything, starts engined (and its containerd-lite), makes
#               busybox:latest with `engine image import-rootfs` and runs it with
#               `engine run`; safe to run again (a running engined is reused)
#   make demo-ocirun  the bottom layer alone: a busybox bundle run by ocirun
#   make test   fmt + clippy + build + every test (what .ci/run runs)
#   make bench  ocirun vs runc vs crun vs the namespace floor, then `ctr run --rm`
#               end to end on containerd with ocirun vs runc, then `docker run --rm`
#               against engined (on containerd) vs dockerd 20.10
#   make install  ocirun, shim and containerd-shim-ocirun-v2 into PREFIX/bin (/usr/local)
# Each target installs the Debian packages it needs (only when missing).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := build

# rustup installs cargo here; make it visible even when the login PATH lacks it.
export PATH := $(HOME)/.cargo/bin:$(PATH)

CARGO      ?= cargo
TARGET_DIR ?= $(or $(CARGO_TARGET_DIR),target)
RELEASE    := $(TARGET_DIR)/release
FIXTURES   := .fixtures
DEMO_BUNDLE := $(FIXTURES)/demo-bundle
DEMO_ROOT  := $(FIXTURES)/ocirun-state
# engined for `make demo`: the default socket (so `engine` needs no -H), state in
# .fixtures, runtime state under /run (its paths must stay short for sockets).
DEMO_SOCK    := /run/engined.sock
DEMO_DATA    := $(abspath $(FIXTURES))/engined
DEMO_EXEC    := /run/engined
DEMO_LOG     := $(abspath $(FIXTURES))/engined.log
DEMO_ROOTFS  := $(FIXTURES)/busybox-bundle/rootfs
ENGINE       := $(RELEASE)/engine -H unix://$(DEMO_SOCK)
ITERATIONS ?= 50
PREFIX     ?= /usr/local
# install-files copies what is already built here (tests point it at target/debug).
BIN_DIR    ?= $(RELEASE)
# CI=true selects nextest's `ci` profile (.config/nextest.toml).
NEXTEST_PROFILE ?= $(if $(filter true 1,$(CI)),ci,default)

# Test fixtures, the runtimes we compare against, GNU time (peak RSS in the bench),
# the C linker rustc needs, libseccomp (ocirun links it) with pkg-config, ps(1) for
# `ocirun ps`, and the engines the integration tests run ocirun under (containerd +
# ctr, docker.io's dockerd; `script` from bsdutils for manual pty runs), protoc for
# the containerd gRPC API (ours and the containerd-client crate's), and
# docker-registry to pull from in the containerd-lite tests, and openssl to make the
# certificates of the engined TLS tests, and python3-venv for the docker-py test.
APT_PACKAGES := busybox-static runc crun hyperfine time util-linux gcc libc6-dev \
                libseccomp-dev pkg-config procps containerd docker.io bsdutils \
                protobuf-compiler docker-registry openssl python3-venv

.PHONY: deps build demo demo-ocirun test bench bench-shim install install-files clean

# Quiet and idempotent: prints nothing when everything is already there.
deps:
	@missing=""; \
	for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' "$$p" 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "deps: installing$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive DEBCONF_NOWARNINGS=yes NEEDRESTART_SUSPEND=1; \
	  apt-get update -qq; \
	  : "containerd/docker.io postinsts would start system daemons: the tests start their own"; \
	  policy=/usr/sbin/policy-rc.d; own_policy=""; \
	  if [ ! -e $$policy ]; then printf '#!/bin/sh\nexit 101\n' >$$policy; chmod +x $$policy; own_policy=1; fi; \
	  status=0; apt-get install -y -qq --no-install-recommends $$missing >/dev/null || status=$$?; \
	  if [ -n "$$own_policy" ]; then rm -f $$policy; fi; \
	  exit $$status; \
	fi
	@if ! command -v $(CARGO) >/dev/null; then \
	  echo "deps: no cargo; installing the stable Rust toolchain with rustup"; \
	  command -v curl >/dev/null || { apt-get update -qq; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl ca-certificates >/dev/null; }; \
	  curl -sSf https://sh.rustup.rs | sh -s -- -y -q --profile minimal -c rustfmt,clippy; \
	fi
	@if ! $(CARGO) fmt --version >/dev/null 2>&1 || ! $(CARGO) clippy --version >/dev/null 2>&1; then \
	  echo "deps: adding rustfmt and clippy"; rustup component add rustfmt clippy; \
	fi
	@if ! $(CARGO) nextest --version >/dev/null 2>&1; then \
	  echo "deps: installing cargo-nextest"; $(CARGO) install --locked --quiet cargo-nextest; \
	fi

# The symlink is the name containerd looks up for io.containerd.ocirun.v2, so
# target/release can go on containerd's PATH as it is.
build: deps
	$(CARGO) build --release --workspace --bins
	ln -sfn shim $(RELEASE)/containerd-shim-ocirun-v2

install: build
	$(MAKE) --no-print-directory install-files

# The shim finds ocirun next to itself, so both go in one directory.
install-files:
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(BIN_DIR)/ocirun $(BIN_DIR)/shim $(DESTDIR)$(PREFIX)/bin/
	ln -sfn shim $(DESTDIR)$(PREFIX)/bin/containerd-shim-ocirun-v2

# A running engined on the socket is reused; otherwise one is started in the
# background (it starts its containerd-lite, which outlives it and is adopted by the
# next one). busybox:latest is made once, from the rootfs of a busybox bundle.
demo: deps build
	@mkdir -p $(FIXTURES) $(DEMO_DATA)
	@if $(ENGINE) version >/dev/null 2>&1; then \
	  echo "demo: engined is already running on $(DEMO_SOCK)"; \
	else \
	  echo "demo: starting engined on $(DEMO_SOCK) (state in $(DEMO_DATA), log in $(DEMO_LOG))"; \
	  setsid $(RELEASE)/engined -H unix://$(DEMO_SOCK) --data-root $(DEMO_DATA) \
	    --exec-root $(DEMO_EXEC) --pidfile $(DEMO_EXEC).pid >>$(DEMO_LOG) 2>&1 </dev/null & \
	  for i in $$(seq 1 150); do $(ENGINE) version >/dev/null 2>&1 && break; sleep 0.2; done; \
	  $(ENGINE) version >/dev/null || { echo "demo: engined did not come up; see $(DEMO_LOG)"; tail -20 $(DEMO_LOG); exit 1; }; \
	fi
	@if ! $(ENGINE) image inspect busybox:latest >/dev/null 2>&1; then \
	  [ -d $(DEMO_ROOTFS)/bin ] || $(RELEASE)/mkbundle $(FIXTURES)/busybox-bundle >/dev/null; \
	  echo "+ engine image import-rootfs $(DEMO_ROOTFS) busybox:latest"; \
	  $(ENGINE) image import-rootfs $(DEMO_ROOTFS) busybox:latest; \
	fi
	@echo "+ engine run --rm busybox echo hello from a container"
	@$(ENGINE) run --rm busybox echo hello from a container
	@$(ENGINE) rm -f demo >/dev/null 2>&1 || true
	@echo "+ engine run -d --name demo busybox sh -c 'while true; do date; sleep 5; done'"
	@$(ENGINE) run -d --name demo busybox sh -c 'while true; do date; sleep 5; done' >/dev/null
	@echo "+ engine ps -a"
	@$(ENGINE) ps -a
	@echo
	@echo "engine is in $(RELEASE)/engine. The real docker CLI talks to the same daemon:"
	@echo "  export DOCKER_HOST=unix://$(DEMO_SOCK)"
	@echo "  docker ps; docker logs demo; docker exec -it demo sh"
	@echo "Stop it with: kill \$$(cat $(DEMO_EXEC).pid)   (state stays in $(DEMO_DATA))"

# Bundle is made once (delete .fixtures to remake it); each run uses a fresh id and
# `run` deletes the container when it exits, so this is safe to repeat.
demo-ocirun: deps build
	@mkdir -p $(FIXTURES)
	@[ -f $(DEMO_BUNDLE)/config.json ] || $(RELEASE)/mkbundle $(DEMO_BUNDLE) \
	  sh -c 'echo "hello from a container"; echo "hostname: $$(hostname)"; echo "id: $$(id)"; echo "processes (pid namespace):"; ps; true'
	$(RELEASE)/ocirun --root $(DEMO_ROOT) run --bundle $(DEMO_BUNDLE) demo-$$$$

# The nextest summary line is the last thing printed on success.
test: deps
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) build --workspace --bins
	$(CARGO) nextest run --workspace --profile $(NEXTEST_PROFILE)

bench: deps build
	$(RELEASE)/ocibench --iterations $(ITERATIONS) --ocirun $(RELEASE)/ocirun
	$(RELEASE)/ctrbench --iterations $(ITERATIONS) --ocirun $(RELEASE)/ocirun
	shim/bench/memory.sh $(RELEASE)/shim $(or $(SHIMS),20)
	$(RELEASE)/cdlitebench --iterations 5 --containerd-lite $(RELEASE)/containerd-lite
	$(RELEASE)/enginebench --iterations $(ITERATIONS) --engined $(RELEASE)/engined

# Idle shim memory (RSS/PSS/USS per shim, 20 containers) next to Debian's
# containerd-shim-runc-v2, under a private containerd.
bench-shim: deps build
	shim/bench/memory.sh $(RELEASE)/shim $(or $(SHIMS),20)

# The demo's engined keeps its state in .fixtures: its container goes first, then
# engined itself (SIGTERM also stops its containerd-lite), before the files go.
clean:
	@pid=$$(cat $(DEMO_EXEC).pid 2>/dev/null || true); \
	if [ -n "$$pid" ] && grep -qsF '$(DEMO_DATA)' /proc/$$pid/cmdline; then \
	  $(ENGINE) rm -f demo >/dev/null 2>&1 || true; \
	  kill $$pid; for i in $$(seq 1 100); do [ -d /proc/$$pid ] || break; sleep 0.1; done; \
	fi
	$(CARGO) clean
	rm -rf $(FIXTURES)
