"""``make demo-docker``: the seed's whole chain, with every layer below dockerd pyrunc's.

    docker CLI -> dockerd 20.10 -> pyrunc-supervisor -> pyrunc-shim -> pyrunc -> the container

Starts pyrunc-supervisor and dockerd (``--containerd`` on the supervisor's socket, pyrunc
added as a runtime and made the default) in a network namespace and a temporary tree of their
own (conformance/engines/dockerlib.py), imports a busybox image from a local rootfs tarball, and
shows a few docker commands as it runs them.  Everything is removed at the end.
"""

import os
import shlex
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "conformance", "engines"))
os.environ["ENGINES_DIRECT"] = "1"      # hand dockerd pyrunc itself (no tracing wrapper)

import dockerlib as dl  # noqa: E402
import enginelib as el  # noqa: E402

SCRIPT = "echo \"hello from $(hostname), pid $$, as $(id -un)\"; exit 42"


def show(stack: dl.DockerStack, *args) -> int:
    print(f"$ docker {shlex.join(str(a) for a in args)}", flush=True)
    res = stack(*args)
    sys.stdout.write(res.stdout)
    sys.stdout.write(res.stderr)
    print(f"(exit code {res.returncode})\n", flush=True)
    return res.returncode


def main() -> int:
    if os.geteuid() != 0:
        print("make demo-docker: needs root (dockerd, network namespaces)", file=sys.stderr)
        return 1
    ws = el.Workspace()
    stack = dl.DockerStack(ws, tag="demo")
    try:
        print("starting pyrunc-supervisor and dockerd --containerd <supervisor socket> "
              "--add-runtime pyrunc=... --default-runtime pyrunc ...", flush=True)
        stack.start()
        stack.import_image(el.build_rootfs_tar(ws))
        show(stack, "info", "--format",
             "runtimes: {{range $k, $v := .Runtimes}}{{$k}} {{end}}\n"
             "default runtime: {{.DefaultRuntime}}")
        rc = show(stack, "run", "--rm", "--hostname", "demo", dl.IMAGE, "sh", "-c", SCRIPT)
        show(stack, "run", "-d", "--name", "web", "-p", "8080:80", dl.IMAGE,
             "httpd", "-f", "-p", "80", "-h", "/etc")
        show(stack, "ps", "--format", "{{.Names}}  {{.Status}}  {{.Ports}}")
        show(stack, "exec", "web", "ps")
        print("the chain below dockerd, as processes (everything in the demo's network "
              "namespace but the containers):")
        for pid in sorted(stack.netns.pids()):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            line = b" ".join(argv).decode(errors="replace").strip()
            print(f"  {pid:>7}  {line[:110]}")
        print(flush=True)
        show(stack, "stop", "-t", "1", "web")
        show(stack, "ps", "-a", "--format", "{{.Names}}  {{.Status}}")
        return 0 if rc == 42 else 1
    finally:
        stack.stop()
        ws.cleanup()


if __name__ == "__main__":
    sys.exit(main())
