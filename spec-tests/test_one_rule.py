"""One rule, one place (pyrunc/spec.py's docstring): duplicate rlimits, duplicate namespaces and
id mappings without a user namespace are rules of pyrunc/validate.py alone; the parser only
builds records.  Each case goes through the real command line and must be answered by the
validator's message, for config.json and for an exec's ``--process`` file alike."""

import json
import os

from harness import base_config


def test_duplicate_namespace_is_the_validators(runtime):
    cfg = base_config()
    cfg["linux"]["namespaces"].append({"type": "pid"})
    res = runtime.run(cfg)
    assert res.rc == 1 and "linux.namespaces[" in res.err \
        and "duplicate namespace type pid" in res.err, res


def test_id_mappings_without_user_namespace_are_the_validators(runtime):
    cfg = base_config()
    cfg["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 1000}]
    cfg["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 1000}]
    res = runtime.run(cfg)
    assert res.rc == 1 and "linux.uidMappings: needs a user namespace" in res.err, res


def test_duplicate_rlimit_is_the_validators_in_config_and_exec(runtime, tmp_path):
    cfg = base_config()
    cfg["process"]["rlimits"].append({"type": "RLIMIT_NOFILE", "hard": 64, "soft": 64})
    res = runtime.run(cfg)
    assert res.rc == 1 and \
        "process.rlimits[1].type: duplicate rlimit RLIMIT_NOFILE (also process.rlimits[0])" \
        in res.err, res
    bundle = runtime.bundle(base_config(["sleep", "60"]))
    cid = runtime.new_id()
    runtime("create", "--bundle", bundle, cid, check=True)
    try:
        process = dict(cfg["process"], args=["true"])
        path = os.path.join(str(tmp_path), "process.json")
        with open(path, "w") as f:
            json.dump(process, f)
        res = runtime("exec", "--process", path, cid)
        assert res.rc == 255 and f"exec: --process {path}: process.rlimits[1].type: duplicate " \
            "rlimit RLIMIT_NOFILE" in res.err, res
    finally:
        runtime("delete", "--force", cid, check=True)
