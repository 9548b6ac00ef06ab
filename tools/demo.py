"""``make demo``: build a busybox bundle and run a container with pyrunc.

Shows the commands as it runs them, the container's output, and its exit code.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYRUNC = os.path.join(REPO, ".venv", "bin", "pyrunc")


def build_bundle(path: str) -> None:
    rootfs = os.path.join(path, "rootfs")
    os.makedirs(os.path.join(rootfs, "bin"))
    for d in ("proc", "sys", "dev", "tmp", "etc", "root"):
        os.makedirs(os.path.join(rootfs, d), exist_ok=True)
    shutil.copy2("/bin/busybox", os.path.join(rootfs, "bin", "busybox"))
    applets = subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    for applet in applets:
        if applet != "busybox":
            os.symlink("busybox", os.path.join(rootfs, "bin", applet))
    with open(os.path.join(rootfs, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\n")
    subprocess.run([PYRUNC, "spec", "--bundle", path], check=True)
    config_path = os.path.join(path, "config.json")
    with open(config_path) as f:
        config = json.load(f)
    config["process"]["terminal"] = False
    config["process"]["args"] = [
        "sh", "-c",
        "echo \"hello from $(hostname), pid $$, as $(id -un)\"; "
        "echo 'mounts:'; cut -d' ' -f2,3 /proc/mounts | sed 's/^/  /'; "
        "echo 'capabilities:'; grep Cap /proc/self/status | sed 's/^/  /'; "
        "exit 42"]
    with open(config_path, "w") as f:
        json.dump(config, f, indent=2)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="pyrunc-demo-") as tmp:
        bundle = os.path.join(tmp, "bundle")
        state = os.path.join(tmp, "state")
        build_bundle(bundle)
        cmd = [PYRUNC, "--root", state, "run", "--bundle", bundle, "demo"]
        print("$", " ".join(cmd), flush=True)
        code = subprocess.run(cmd, stdin=subprocess.DEVNULL).returncode
        print(f"exit code: {code} (the container ran 'exit 42')")
        return 0 if code == 42 else 1


if __name__ == "__main__":
    sys.exit(main())
