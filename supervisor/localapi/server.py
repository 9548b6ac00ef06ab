"""The local API's unix socket server (protocol: supervisor/localapi/__init__.py).

Served on the daemon's event loop with asyncio streams: a connection is read for one request
line, the call runs while the connection is watched for a hang-up (which cancels it, as a
cancelled gRPC call would be), the reply line is written and the connection closed.

The socket is claimed as every other one is (supervisor/listen.py): a stale file (nothing
answers) is replaced, a live server's is never touched (the daemon refuses to start). It is created 0600 (root only), and at
stop it is removed only if it is still the one this server made (same inode).
"""
from __future__ import annotations

import asyncio
import json
import os

from supervisor.listen import claim
from supervisor.localapi import MAX_LINE
from supervisor.localapi.dispatch import CallError, Dispatcher


class LocalServer:
    def __init__(self, path: str, services, observers=()):
        self.path = path
        self.dispatcher = Dispatcher(services, observers)
        self.server: asyncio.AbstractServer | None = None
        self._inode = None

    async def start(self) -> None:
        claim(self.path)
        old = os.umask(0o177)  # created 0600
        try:
            self.server = await asyncio.start_unix_server(self._serve, self.path, limit=MAX_LINE)
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        self._inode = os.stat(self.path).st_ino

    async def stop(self) -> None:
        if self.server is None:
            return
        self.server.close()
        await self.server.wait_closed()
        self.server = None
        try:
            if os.stat(self.path).st_ino == self._inode:
                os.unlink(self.path)
        except FileNotFoundError:
            pass

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            if not line:
                return
            reply = await self._answer(line, reader)
            if reply is not None:
                writer.write(json.dumps(reply, separators=(",", ":")).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass  # the client went away or sent more than a message may hold
        finally:
            writer.close()

    async def _answer(self, line: bytes, reader: asyncio.StreamReader) -> dict | None:
        try:
            msg = json.loads(line)
            method, ns = msg["m"], msg.get("ns", "")
            timeout = msg.get("timeout")
            if not isinstance(method, str) or not isinstance(ns, str) or not (
                    timeout is None or isinstance(timeout, (int, float))):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return {"err": {"code": "INVALID_ARGUMENT", "details": "malformed request"}}
        call = asyncio.ensure_future(self.dispatcher.call(method, ns, msg.get("req"), timeout))
        hangup = asyncio.ensure_future(reader.read(1))
        try:
            await asyncio.wait({call, hangup}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            hangup.cancel()
        if not call.done():  # the client hung up (or sent more than its one line)
            call.cancel()
            return None
        try:
            return {"ok": call.result()}
        except CallError as e:
            return {"err": {"code": e.code, "details": e.details}}
        except Exception as e:  # a reply that could not be encoded: say so, as grpc would
            from supervisor import log
            log.log("error", "local API call", exc_info=True, method=method)
            return {"err": {"code": "UNKNOWN", "details": f"Unexpected {type(e)}: {e}"}}
