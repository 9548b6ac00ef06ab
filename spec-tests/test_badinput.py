"""Bad input: one clear error line, a non-zero exit, and nothing left behind.

The ``runtime`` fixture checks after every test that no state directory, container process,
host mount or cgroup remains.
"""

import json
import os
import subprocess

import pytest

from harness import base_config


def create_with(runtime, config_text=None, config=None, bundle=None):
    bundle = bundle or runtime.bundle()
    if config_text is not None or config is not None:
        runtime.write_config(bundle, config_text if config_text is not None else config)
    cid = runtime.new_id()
    res = runtime("create", "--bundle", bundle, cid, stdin=subprocess.DEVNULL)
    assert res.rc == 1, res
    lines = [l for l in res.err.splitlines() if "level=error" in l]
    assert len(lines) == 1, res.err            # exactly one error line
    assert runtime("state", cid).rc == 1       # no container
    return res.err


@pytest.mark.parametrize("text,needle", [
    ("", "empty document"),
    ('{"ociVersion": "1.3.0", "root": {"path": "rootfs"', "invalid JSON"),
    ("[1, 2, 3]", "must be a JSON object"),
    ("not json at all", "invalid JSON"),
    ('{"ociVersion": "1.3.0", "root": {"path": "rootfs"}} trailing', "extra data"),
])
def test_malformed_or_truncated_config(runtime, text, needle):
    assert needle in create_with(runtime, config_text=text)


@pytest.mark.parametrize("mutate,needle", [
    (lambda c: c["process"].update(args="sh"), "process.args"),
    (lambda c: c["process"].update(args=[]), "process.args"),
    (lambda c: c["process"]["user"].update(uid="root"), "process.user.uid"),
    (lambda c: c["process"].update(terminal="yes"), "process.terminal"),
    (lambda c: c["root"].update(readonly=1), "root.readonly"),
    (lambda c: c.update(mounts={"destination": "/x"}), "mounts"),
    (lambda c: c["mounts"][0].update(destination=5), "mounts[0].destination"),
    (lambda c: c["linux"]["namespaces"].append({"type": "bogus"}), "linux.namespaces[5].type"),
    (lambda c: c.pop("ociVersion"), "ociVersion"),
    (lambda c: c.update(ociVersion="2.0.0"), "ociVersion"),
    (lambda c: c.pop("root"), "root"),
    (lambda c: c["process"].update(cwd="relative"), "process.cwd"),
    (lambda c: c["process"]["rlimits"].append(dict(c["process"]["rlimits"][0])),
     "process.rlimits"),
])
def test_wrong_types_and_values(runtime, mutate, needle):
    cfg = base_config()
    mutate(cfg)
    assert needle in create_with(runtime, config=cfg)


def test_unknown_fields_are_ignored(runtime):
    cfg = base_config(["true"])
    cfg["someFutureField"] = {"x": 1}
    cfg["process"]["futureProcessField"] = True
    cfg["linux"]["futureLinuxField"] = [1, 2]
    assert runtime.run(cfg).rc == 0


def test_missing_rootfs(runtime):
    bundle = runtime.bundle()
    import shutil
    shutil.rmtree(os.path.join(bundle, "rootfs"))
    assert "root.path" in create_with(runtime, bundle=bundle)


def test_missing_config(runtime, tmp_path):
    bundle = tmp_path / "empty-bundle"
    bundle.mkdir()
    err = create_with(runtime, bundle=str(bundle))
    assert "config.json" in err and "No such file" in err


def test_mount_destination_with_dotdot(runtime):
    cfg = base_config()
    cfg["mounts"].append({"destination": "/../../etc/evil", "type": "tmpfs",
                          "source": "tmpfs"})
    assert "'..'" in create_with(runtime, config=cfg)


def test_rootfs_symlink_pointing_out_stays_inside(runtime, tmp_path):
    """A mount destination through a symlink to / lands inside the rootfs, not on the host."""
    bundle = runtime.bundle(base_config(["sh", "-c", "ls /escape"]))
    os.symlink("/", os.path.join(bundle, "rootfs/link-to-root"))
    os.symlink("../../../../../../../..", os.path.join(bundle, "rootfs/link-up"))
    victim = tmp_path / "victim"
    victim.mkdir()
    cfg = base_config(["sh", "-c", "ls -d /escape /tmp/escape2"])
    cfg["mounts"] += [
        {"destination": "/link-to-root/escape", "type": "tmpfs", "source": "tmpfs"},
        {"destination": f"/link-up/{tmp_path}/victim/escape2", "type": "tmpfs",
         "source": "tmpfs"},
    ]
    cfg["mounts"][-1]["destination"] = "/link-up/tmp/escape2"
    runtime.write_config(bundle, cfg)
    res = runtime("run", "--bundle", bundle, runtime.new_id(), stdin=subprocess.DEVNULL)
    assert res.rc == 0, res
    assert res.out.split() == ["/escape", "/tmp/escape2"]
    # the directories were made inside the rootfs, none on the host
    assert os.path.isdir(os.path.join(bundle, "rootfs/escape"))
    assert os.path.isdir(os.path.join(bundle, "rootfs/tmp/escape2"))
    assert not os.path.exists("/escape") and not os.path.exists("/tmp/escape2")


def test_symlinked_proc_refused(runtime, tmp_path):
    bundle = runtime.bundle()
    os.rmdir(os.path.join(bundle, "rootfs/proc"))
    os.symlink(str(tmp_path), os.path.join(bundle, "rootfs/proc"))
    err = create_with(runtime, bundle=bundle)
    assert "/proc is a symlink" in err


def test_only_procfs_at_proc(runtime, tmp_path):
    cfg = base_config()
    cfg["mounts"][0] = {"destination": "/proc", "type": "tmpfs", "source": "tmpfs"}
    assert "only procfs" in create_with(runtime, config=cfg)
    cfg = base_config()
    cfg["mounts"][0] = {"destination": "/proc", "source": str(tmp_path), "options": ["bind"]}
    assert "only procfs" in create_with(runtime, config=cfg)


def test_bind_source_missing(runtime, tmp_path):
    cfg = base_config()
    cfg["mounts"].append({"destination": "/data", "source": str(tmp_path / "missing"),
                          "options": ["bind"]})
    err = create_with(runtime, config=cfg)
    assert "mounts[6]" in err and "missing" in err


def test_unknown_filesystem_type(runtime):
    cfg = base_config()
    cfg["mounts"].append({"destination": "/x", "type": "nosuchfs", "source": "x"})
    assert "mounts[6] nosuchfs" in create_with(runtime, config=cfg)


def test_no_mount_namespace_refused(runtime):
    cfg = base_config()
    cfg["linux"]["namespaces"] = [{"type": "pid"}, {"type": "uts"}]
    assert "mount namespace" in create_with(runtime, config=cfg)


def test_bad_global_flags(runtime):
    res = runtime("--log-format", "xml", "list")
    assert res.rc == 1 and "log-format" in res.err
    res = runtime("create", "--no-such-flag", "x")
    assert res.rc == 1 and "flag provided but not defined" in res.err
    res = runtime("frobnicate")
    assert res.rc == 3 and "no such command" in res.err     # runc's code (urfave/cli)
    res = runtime("start")
    assert res.rc == 1 and "requires exactly 1 argument" in res.err


def test_systemd_cgroup_is_refused_by_create_and_run(runtime):
    """No systemd driver: create and run refuse --systemd-cgroup with one error and exit 1, as
    runc does where systemd does not run, before anything is made (the fixture checks no state
    directory, process, mount or cgroup is left); other commands accept and ignore it, as runc
    does (podman configured for systemd passes it on every call)."""
    cfg = base_config()
    cfg["linux"]["resources"] = {"memory": {"limit": 64 << 20}, "pids": {"limit": 10}}
    bundle = runtime.bundle()
    runtime.write_config(bundle, cfg)
    for cmd in ("create", "run"):
        cid = runtime.new_id()
        res = runtime("--systemd-cgroup", cmd, "--bundle", bundle, cid, stdin=subprocess.DEVNULL)
        assert res.rc == 1, res
        lines = [line for line in res.err.splitlines() if "level=error" in line]
        assert len(lines) == 1 and "--systemd-cgroup: pyrunc has no systemd cgroup driver" \
            in lines[0], res.err
        assert runtime("state", cid).rc == 1
    res = runtime("--systemd-cgroup", "list")
    assert res.rc == 0, res


def test_operations_on_missing_container(runtime):
    for args in (["start", "nope"], ["state", "nope"], ["kill", "nope"], ["delete", "nope"]):
        res = runtime(*args)
        assert res.rc == 1 and 'container \\"nope\\" does not exist' in res.err, args


def test_preserve_fds_beyond_open(runtime):
    bundle = runtime.bundle()
    res = runtime("create", "--preserve-fds", "5", "--bundle", bundle, runtime.new_id(),
                  stdin=subprocess.DEVNULL)
    assert res.rc == 1 and "--preserve-fds 5: fd 3 is not open" in res.err


def test_error_goes_to_json_log(runtime, tmp_path):
    log = tmp_path / "log.json"
    res = runtime("--log", str(log), "--log-format", "json", "state", "nope")
    assert res.rc == 1
    assert res.err.strip() == 'container "nope" does not exist'
    entries = [json.loads(l) for l in log.read_text().splitlines()]
    assert entries[-1]["level"] == "error" and "does not exist" in entries[-1]["msg"]
    assert set(entries[-1]) == {"level", "msg", "time"}
