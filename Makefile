# Build, demo, test and benchmark entry points. Run as root on Debian 12:
#   make demo   builds everything and runs a busybox container with ocirun
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
# certificates of the engined TLS tests.
APT_PACKAGES := busybox-static runc crun hyperfine time util-linux gcc libc6-dev \
                libseccomp-dev pkg-config procps containerd docker.io bsdutils \
                protobuf-compiler docker-registry openssl

.PHONY: deps build demo test bench bench-shim install install-files clean

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

# Bundle is made once (delete .fixtures to remake it); each run uses a fresh id and
# `run` deletes the container when it exits, so this is safe to repeat.
demo: deps build
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

clean:
	$(CARGO) clean
	rm -rf $(FIXTURES)
