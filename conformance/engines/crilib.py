"""A small CRI client: what a kubelet asks containerd's CRI plugin, over its gRPC socket.

This is the path on which containerd's own configuration picks the runtime binary: each
runtime handler of the CRI plugin is ``io.containerd.runc.v2`` with ``BinaryName`` in its
options (see :meth:`enginelib.Containerd.config`), and a pod names its handler.  The message
classes come from ``cri_subset.proto``, compiled into the session's temp tree at start-up.
"""

from __future__ import annotations

import importlib
import itertools
import sys
import time
from pathlib import Path

from enginelib import HERE, Containerd, Runtime, Workspace, run

CRI_NS = "k8s.io"          # the containerd namespace the CRI plugin works in


def compile_proto(ws: Workspace):
    out = ws.mkdir("cri-gen")
    run([sys.executable, "-m", "grpc_tools.protoc", f"-I{HERE}", f"--python_out={out}",
         str(HERE / "cri_subset.proto")], check=True)
    sys.path.insert(0, str(out))
    return importlib.import_module("cri_subset_pb2")


class Cri:
    def __init__(self, ctd: Containerd, pb, image: str):
        import grpc
        self.ctd, self.ws, self.pb, self.image = ctd, ctd.ws, pb, image
        self.channel = grpc.insecure_channel(f"unix://{ctd.sock}")
        self.pods = itertools.count(1)

    def call(self, method: str, fields: dict | None = None, deadline: float = 60):
        """One RuntimeService call: ``<method>Request(**fields)`` -> ``<method>Response``."""
        req_cls = getattr(self.pb, f"{method}Request")
        resp_cls = getattr(self.pb, f"{method}Response")
        stub = self.channel.unary_unary(f"/runtime.v1.RuntimeService/{method}",
                                        request_serializer=req_cls.SerializeToString,
                                        response_deserializer=resp_cls.FromString)
        return stub(req_cls(**(fields or {})), timeout=deadline)

    def wait_ready(self, timeout: float = 30):
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.call("Version", {"version": "v1"}, deadline=5)
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def close(self):
        self.channel.close()


class CriPod:
    """One pod sandbox on one runtime handler (host network: no CNI here) and its containers."""

    def __init__(self, cri: Cri, runtime: Runtime):
        self.cri, self.runtime, self.pb = cri, runtime, cri.pb
        n = next(cri.pods)
        self.logdir = cri.ws.mkdir("cri-logs", f"{runtime.name}-{n}")
        pb = self.pb
        self.config = pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name=f"pod-{runtime.name}-{n}",
                                           uid=f"{cri.ws.prefix}-{n}", namespace="pyrunc-eng"),
            # no hostname: with the host's network the pod has the host's UTS namespace too
            log_directory=str(self.logdir),
            linux=pb.LinuxPodSandboxConfig(
                cgroup_parent=f"{cri.ctd.cri_cgroup_parent}/pod{n}",
                security_context=pb.LinuxSandboxSecurityContext(
                    namespace_options=pb.NamespaceOption(network=pb.NODE, pid=pb.CONTAINER,
                                                         ipc=pb.POD))))
        self.id = cri.call("RunPodSandbox", {"config": self.config,
                                             "runtime_handler": runtime.name}).pod_sandbox_id
        cri.ws.known_ids.add(self.id)
        self.containers: list[str] = []
        self.names = itertools.count(1)

    def status(self):
        return self.cri.call("PodSandboxStatus", {"pod_sandbox_id": self.id}).status

    def create(self, command: list[str], *, env: dict | None = None, workdir: str = "",
               mounts=(), linux=None) -> tuple[str, Path]:
        pb = self.pb
        name = f"c{next(self.names)}"
        cfg = pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name=name), image=pb.ImageSpec(image=self.cri.image),
            command=command, working_dir=workdir,
            envs=[pb.KeyValue(key=k, value=v) for k, v in (env or {}).items()],
            mounts=list(mounts), log_path=f"{name}.log", linux=linux)
        cid = self.cri.call("CreateContainer", {"pod_sandbox_id": self.id, "config": cfg,
                                                "sandbox_config": self.config}).container_id
        self.containers.append(cid)
        self.cri.ws.known_ids.add(cid)
        return cid, self.logdir / f"{name}.log"

    def start(self, cid: str):
        self.cri.call("StartContainer", {"container_id": cid})

    def run(self, command: list[str], **kw) -> tuple[str, Path]:
        cid, log = self.create(command, **kw)
        self.start(cid)
        return cid, log

    def container_status(self, cid: str):
        return self.cri.call("ContainerStatus", {"container_id": cid}).status

    def wait_exited(self, cid: str, timeout: float = 10):
        deadline = time.monotonic() + timeout
        while True:
            st = self.container_status(cid)
            if st.state == self.pb.CONTAINER_EXITED:
                return st
            if time.monotonic() > deadline:
                raise AssertionError(f"container {cid} still in state "
                                     f"{self.pb.ContainerState.Name(st.state)} after {timeout}s")
            time.sleep(0.1)

    def exec_sync(self, cid: str, cmd: list[str], timeout: int = 20):
        return self.cri.call("ExecSync", {"container_id": cid, "cmd": cmd, "timeout": timeout},
                             deadline=timeout + 10)

    def stop(self, cid: str, grace: int):
        self.cri.call("StopContainer", {"container_id": cid, "timeout": grace},
                      deadline=grace + 15)

    def update(self, cid: str, resources):
        self.cri.call("UpdateContainerResources", {"container_id": cid, "linux": resources})

    def remove(self, cid: str):
        self.cri.call("RemoveContainer", {"container_id": cid})
        self.containers.remove(cid)

    def close(self):
        """Remove the containers and the pod through the CRI.  If the engine cannot (a runtime
        call fails), the pod's processes are killed and its tasks and containers removed at
        containerd's level, so nothing is left behind; the CRI's error is raised."""
        try:
            for cid in list(self.containers):
                self.cri.call("RemoveContainer", {"container_id": cid}, deadline=8)
                self.containers.remove(cid)
            self.cri.call("StopPodSandbox", {"pod_sandbox_id": self.id}, deadline=8)
            self.cri.call("RemovePodSandbox", {"pod_sandbox_id": self.id}, deadline=8)
        except Exception:
            self.force_remove()
            raise

    def force_remove(self):
        from enginelib import kill_cgroup
        kill_cgroup(self.config.linux.cgroup_parent)
        for cid in [*self.containers, self.id]:
            self.cri.ctd.ctr("tasks", "delete", "-f", cid, ns=CRI_NS, timeout=20)
            self.cri.ctd.ctr("containers", "rm", cid, ns=CRI_NS, timeout=20)
