#!/bin/sh
# Runs inside the VM (tools/vm/run.py), as root, in the checkout: make sure cgroup2 is the
# only hierarchy at /sys/fs/cgroup, then run pytest on the given test files.
#   tools/vm/guest.sh spec-tests/cgroups/test_cgroups_v2.py ...
echo "PYRUNC-VM-GUEST-START $(uname -r)"
if [ "$(stat -f -c %T /sys/fs/cgroup 2>/dev/null)" != cgroup2fs ]; then
    mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup || {
        echo "guest: cannot mount cgroup2 at /sys/fs/cgroup"; echo "PYRUNC-VM-RESULT 4"; exit 4; }
fi
echo "guest: cgroup2 controllers: $(cat /sys/fs/cgroup/cgroup.controllers)"
# The shared tree is read-only here: no .pyc or pytest cache writes, and no conftest.py files
# above the cgroup tests (they may set up things this VM does not need).
export PYTHONDONTWRITEBYTECODE=1
# Output reaches the host as it happens (one line per test), and a test that hangs fails on its
# own after PYRUNC_VM_TEST_TIMEOUT seconds with every thread's stack printed (pytest-timeout),
# so a stall names its test instead of eating the whole VM's budget.
export PYTHONUNBUFFERED=1
.venv/bin/python -m pytest -p no:cacheprovider --confcutdir=spec-tests/cgroups -v \
    --durations=5 --timeout="${PYRUNC_VM_TEST_TIMEOUT:-180}" "$@"
rc=$?
echo "PYRUNC-VM-RESULT $rc"
exit $rc
