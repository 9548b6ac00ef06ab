# pyrunc — set-up, tests and demo.  Every target works on a fresh Debian 12 machine (as root).
SHELL     := /bin/bash
VENV      := .venv
PY        := $(VENV)/bin/python
STAMP     := .stamp
# Packages the runtime, its tests and the side-by-side anchors need.
APT_PKGS  := libcap-dev busybox-static iproute2 tmux runc crun containerd podman \
             qemu-system-x86 linux-image-amd64 procps psmisc util-linux hyperfine strace \
             docker.io docker-registry skopeo umoci uidmap containernetworking-plugins \
             iptables conntrack
PYTEST    ?= $(PY) -m pytest

.PHONY: setup launcher test test-host test-vm demo demo-docker bench conformance \
        conformance-rootless engines proto clean

setup: $(STAMP)/apt $(STAMP)/venv proto launcher

# The fast pyrunc launcher (python -I -S; see tools/launcher.py) and compiled bytecode, so the
# first call does not pay for compiling (this environment may set PYTHONDONTWRITEBYTECODE).
launcher: $(STAMP)/venv
	@$(PY) tools/launcher.py $(VENV) .
	@$(PY) tools/ctl_launcher.py $(VENV) .
	@$(PY) -m compileall -q pyrunc supervisor

$(STAMP)/apt: Makefile
	@mkdir -p $(STAMP)
	@missing=$$(for p in $(APT_PKGS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "apt: installing $$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -q && apt-get install -y -q --no-install-recommends $$missing; \
	fi
	@touch $@

# The venv holds its own copies of the interpreter (--copies), made immutable: every pyrunc
# process runs from them, so a container reaching /proc/<pid>/exe of a runtime process finds a
# file no one can open for writing (see pyrunc/sealed.py).
$(STAMP)/venv: pyproject.toml $(STAMP)/apt
	@mkdir -p $(STAMP)
	test -x $(PY) || /usr/bin/python3 -m venv --copies $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q -e '.[test]' --config-settings editable_mode=compat
	@for f in $(VENV)/bin/python $(VENV)/bin/python3 $(VENV)/bin/python3.*; do \
	  [ -f "$$f" ] && [ ! -L "$$f" ] && chattr +i "$$f" 2>/dev/null || true; done
	@touch $@

# gRPC stubs generated from proto/ (the supervisor's API).
proto: $(STAMP)/venv
	@if ls proto/*.proto >/dev/null 2>&1 || ls proto/*/ >/dev/null 2>&1; then $(PY) tools/genproto.py; fi

# The cgroup v2 driver's tests run in a VM with a pure cgroup v2 kernel (this machine kind is
# hybrid): Debian's kernel under qemu (TCG) via virtme-ng; see docs/cgroups.md.  A VM that
# cannot start or a run over the timeout fails the target.
# Besides the manager-level modules, pyrunc's own containers on cgroup v2 (a focused subset:
# Python runs ~50x slower in the guest).
VM_CONTAINERS := spec-tests/cgroups/test_cgroups_containers.py
VM_TESTS  := spec-tests/cgroups/test_cgroups_behaviour.py spec-tests/cgroups/test_cgroups_v2.py \
             spec-tests/cgroups/test_cgroups_bpf.py spec-tests/cgroups/test_cgroups_rootless.py \
             $(VM_CONTAINERS)::test_memory_limit_oom_kill_and_event \
             $(VM_CONTAINERS)::test_pids_limit_stops_fork_bomb \
             $(VM_CONTAINERS)::test_freeze_stops_cpu_and_resume_restarts_it \
             $(VM_CONTAINERS)::test_denied_device_cannot_be_opened \
             $(VM_CONTAINERS)::test_update_changes_a_live_limit \
             $(VM_CONTAINERS)::test_ps_lists_exactly_the_container \
             $(VM_CONTAINERS)::test_init_is_in_every_cgroup_of_the_container

# The whole VM run's budget: ~170 s on an idle machine; a loaded TCG host has taken over 3x that.
VM_TIMEOUT := 900

# (tools/hostnet.py: the host's network must be as the tests found it; only read)
test: setup
	$(PY) tools/hostnet.py save .stamp/hostnet.json
	$(PYTEST) -q spec-tests
	RUNTIME=$(CURDIR)/$(VENV)/bin/pyrunc $(PYTEST) -q conformance --ignore=conformance/engines
	$(PYTEST) -q -p no:cacheprovider conformance/engines
	$(PY) tools/vm/run.py --timeout $(VM_TIMEOUT) -- tools/vm/guest.sh $(VM_TESTS)
	$(PY) tools/hostnet.py check .stamp/hostnet.json

test-vm: setup
	$(PY) tools/vm/run.py --timeout $(VM_TIMEOUT) -- tools/vm/guest.sh $(VM_TESTS)

demo: setup
	$(PY) tools/demo.py

# The seed's whole chain: docker -> dockerd -> pyrunc-supervisor -> pyrunc-shim -> pyrunc.
demo-docker: setup
	$(PY) tools/demo_docker.py

bench: setup
	$(PY) bench/run.py

# The OCI runtime-spec conformance suite against pyrunc and Debian's runc side by side: one
# table, a column per runtime (see conformance/README.md).  Fails when pyrunc fails a MUST
# check.  CONFORMANCE_ARGS passes options through, e.g. CONFORMANCE_ARGS="--tap --filter hooks".
CONFORMANCE_ARGS ?=
conformance: setup
	$(PY) conformance/run.py --runtime $(VENV)/bin/pyrunc --runtime /usr/sbin/runc $(CONFORMANCE_ARGS)

# The same checks as an unprivileged user (a throwaway one): bundles as rootless engines send
# them (conformance/run_rootless.py).  Checks needing privileges fail for every runtime alike.
conformance-rootless: setup
	$(PY) conformance/run_rootless.py --runtime $(VENV)/bin/pyrunc --runtime /usr/sbin/runc $(CONFORMANCE_ARGS)

# pyrunc under real engines, side by side with runc: podman (--runtime), containerd's runc shim
# (ctr --runc-binary) and containerd's CRI plugin (a runtime handler with BinaryName).  A private
# containerd and podman store per run; prints a scenario x runtime table (conformance/README.md).
# ENGINES_ARGS passes pytest options through, e.g. ENGINES_ARGS="-k podman -x".
ENGINES_ARGS ?=
engines: setup
	$(PYTEST) -q -p no:cacheprovider conformance/engines $(ENGINES_ARGS)

clean:
	-chattr -i $(VENV)/bin/python* 2>/dev/null
	rm -rf $(STAMP) $(VENV) supervisor/gen build *.egg-info
