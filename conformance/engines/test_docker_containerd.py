"""The anchor row beside test_docker.py: the same Docker scenarios with dockerd on containerd 1.6
(containerd-shim-runc-v2 running the runtime dockerd names with ``--runtime``), so the table shows
``docker --runtime pyrunc`` on containerd, and runc there, next to dockerd on pyrunc-supervisor.

The scenarios are test_docker.py's own functions, collected here with this module's ``dk``
fixture (pytest resolves fixtures in the module that collects a test); a subset, to keep the run
short: the daemon-restart scenarios stay with the supervisor's row.
"""

from __future__ import annotations

import pytest

import dockerlib as dl
import enginelib as el
from test_docker import (busybox_tar, test_detached_ps_logs_exec_top_stats_inspect,  # noqa: F401
                         test_kill_signal_and_wait, test_logs_follow_large_output,
                         test_memory_limit_and_update, test_parallel_runs, test_pause_unpause,
                         test_publish_port_inside_the_netns,
                         test_restart_on_failure, test_run_rm_exit_code_and_output,
                         test_stop_timeout_then_sigkill, test_terminal,
                         test_volumes_env_workdir_user)


@pytest.fixture(scope="session")
def docker_on_containerd(ws, busybox_tar):  # noqa: F811
    ctd = el.Containerd(ws)
    stack = None
    try:
        ctd.start()
        stack = dl.DockerStack(ws, tag="c", containerd=ctd.sock)
        stack.start()
        stack.import_image(busybox_tar)
        yield stack
    finally:
        if stack is not None:
            stack.stop()
        ctd.stop()


@pytest.fixture
def dk(docker_on_containerd, runtime):
    client = dl.DockerClient(docker_on_containerd, runtime)
    try:
        yield client
    finally:
        client.cleanup()
