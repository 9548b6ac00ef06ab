"""``make bench``: every benchmark, each printing its ratios against the anchor it ran beside."""

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
BENCHES = [["runtime.py"], ["supervisor", "run.py"], ["supervisor", "pull.py"], ["network.py"],
           ["docker.py"]]


def main() -> int:
    status = 0
    for parts in BENCHES:
        path = os.path.join(HERE, *parts)
        if os.path.exists(path):
            print(f"== {os.path.relpath(path, os.path.dirname(HERE))}", flush=True)
            status |= subprocess.run([sys.executable, path] + sys.argv[1:]).returncode
    return status


if __name__ == "__main__":
    sys.exit(main())
