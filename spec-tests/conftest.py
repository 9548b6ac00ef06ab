"""pytest wiring for the runtime's tests; the helpers and fixtures live in harness.py (a module
name of its own: spec-tests/ subdirectories have their own conftest.py)."""

from harness import (pytest_report_header, rootfs_template, runtime,  # noqa: F401
                     subreaper)

import os

# Every pyrunc the tests start checks that its init imports nothing after the root changed
# (pyrunc/init.py, seal_imports).
os.environ.setdefault("PYRUNC_CHECK_IMPORTS", "1")
