"""The shim pool: starting shims and handing out bound ones.

Shims are forked by a zygote (a pre-initialised shim process, see shim/server.py), so they start
in a few milliseconds and share the zygote's memory copy-on-write; if there is no zygote, a shim
starts from a fresh interpreter. One idle shim is kept ready ("spare") all the same, which takes
even the fork off the ``run`` path.

The pool knows nothing of tasks: whoever takes a shim (the task manager today, a pod sandbox
later) owns it and its connection from then on.
"""
from __future__ import annotations

import asyncio
import os
import secrets

from supervisor import errors, shimclient

CLOSE_WAIT = 10.0   # seconds close() waits for a spare or zygote still starting


class ShimPool:
    def __init__(self, sock_dir: str, shim_log: str):
        self.sock_dir = sock_dir
        self.shim_log = shim_log
        self.spare: asyncio.Task | None = None
        self.zygote: shimclient.ShimClient | None = None
        self.zygote_starting: asyncio.Task | None = None
        os.makedirs(sock_dir, mode=0o700, exist_ok=True)
        os.chmod(sock_dir, 0o700)

    async def open(self) -> None:
        shimclient.precompile_shim()
        try:
            await self._start_zygote()
        except (errors.SupervisorError, OSError):
            self.zygote = None  # shims then start from a fresh interpreter each

    async def close(self) -> None:
        """Drop the spare and the zygote: both exit when their daemon's connection goes (an idle
        shim and the zygote serve nobody else). A spare or zygote still starting is waited for
        (a few milliseconds; at most CLOSE_WAIT seconds) and dropped the same way: cancelled
        half-way it would be a shim nobody connects to, left running until its idle timeout —
        and after a daemon that failed to start, nothing of the pool may stay."""
        for starting in (self.spare, self.zygote_starting):
            if starting is not None and not starting.done():
                await asyncio.wait({starting}, timeout=CLOSE_WAIT)
                starting.cancel()
        spare, self.spare = self.spare, None
        if spare is not None and spare.done() and not spare.cancelled() \
                and not spare.exception():
            spare.result().close()
        if self.zygote is not None:
            self.zygote.close()
            self.zygote = None

    async def _start_zygote(self) -> None:
        path = os.path.join(self.sock_dir, "zygote-" + secrets.token_hex(4) + ".sock")
        await shimclient.spawn_shim(path, self.shim_log, zygote=True)
        client = shimclient.ShimClient(path, on_lost=lambda c: self._zygote_lost(c))
        await client.connect()
        self.zygote = client

    def _zygote_lost(self, client) -> None:
        if self.zygote is client:
            self.zygote = None

    async def _fork_shim(self, path: str) -> bool:
        """Have the zygote fork a shim at path; False if there is no working zygote."""
        if self.zygote is None:
            if self.zygote_starting is None or self.zygote_starting.done():
                self.zygote_starting = asyncio.get_running_loop().create_task(
                    self._start_zygote())
                self.zygote_starting.add_done_callback(lambda t: t.cancelled() or t.exception())
            return False
        try:
            await self.zygote.call("spawn", socket=path, log=self.shim_log)
            return True
        except errors.SupervisorError:
            return False

    async def _new_shim(self) -> shimclient.ShimClient:
        path = os.path.join(self.sock_dir, secrets.token_hex(8) + ".sock")
        if not await self._fork_shim(path):
            await shimclient.spawn_shim(path, self.shim_log)
        client = shimclient.ShimClient(path)
        await client.connect()
        await client.call("subscribe")
        return client

    def refill(self) -> None:
        """Start the next spare shim in the background."""
        self.spare = asyncio.get_running_loop().create_task(self._new_shim())
        self.spare.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def take(self) -> shimclient.ShimClient:
        """A connected, subscribed shim that owns nothing yet (the spare if it is ready)."""
        spare, self.spare = self.spare, None
        self.refill()
        if spare is not None:
            try:
                client = await spare
                if not client.closed:
                    return client
            except (errors.SupervisorError, OSError):
                pass
        return await self._new_shim()

    @staticmethod
    async def release(client: shimclient.ShimClient | None) -> None:
        """Give back a shim that owns nothing (a failed create): it shuts down."""
        if client is not None and not client.closed:
            try:
                await client.call("shutdown")
            except errors.SupervisorError:
                pass
            client.close()
