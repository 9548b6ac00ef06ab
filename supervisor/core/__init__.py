"""The daemon's core: what runs containers, independent of any API.

- ``bundles``   a task's directory: config.json, task.json, exit records, rootfs mount point.
- ``shims``     the shim pool: zygote, spare shim, starting and releasing shims.
- ``tasks``     the task manager on plain records (create/start/exec/kill/delete...).
- ``recovery``  reconnecting to shims after a restart; cleaning up after a dead shim.

Arrows point down: api/ uses core/, core/ never imports api/ or protobuf services.
"""
