"""Leases as GC roots: expiry (``containerd.io/gc.expire``), resources held, collection.

Through the API on the shared daemon, and on the metadata store directly (``roots``/``collect``
with an explicit clock: no waiting)."""
from __future__ import annotations

import time

import grpc
import pytest

from sv_harness import code_of
from supervisor.errors import InvalidArgument
from supervisor.gen.containerd.services.leases.v1 import leases_pb2 as lpb
from supervisor.metadata.leases import EXPIRE_LABEL, Leases, parse_expire
from supervisor.metadata.store import Store


def _rfc3339(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def test_expired_lease_is_gone_with_its_resources(sv):
    client = sv.client()
    past = client.leases.Create(lpb.CreateRequest(
        id="h13-past", labels={EXPIRE_LABEL: _rfc3339(time.time() - 5)})).lease
    assert past.id == "h13-past"
    future = client.leases.Create(lpb.CreateRequest(
        id="h13-future", labels={EXPIRE_LABEL: _rfc3339(time.time() + 3600)})).lease
    res = lpb.Resource(id="sha256:" + "a" * 64, type="content")
    client.leases.AddResource(lpb.AddResourceRequest(id=future.id, resource=res))
    ids = [le.id for le in client.leases.List(lpb.ListRequest()).leases]
    assert "h13-future" in ids and "h13-past" not in ids
    code, _ = code_of(client.leases.ListResources, lpb.ListResourcesRequest(id="h13-past"))
    assert code == grpc.StatusCode.NOT_FOUND
    listed = client.leases.ListResources(lpb.ListResourcesRequest(id=future.id)).resources
    assert [(r.type, r.id) for r in listed] == [("content", res.id)]
    client.leases.Delete(lpb.DeleteRequest(id=future.id))
    assert sv.db_count("lease_resources") == 0


@pytest.mark.parametrize("labels,resource,what", [
    ({EXPIRE_LABEL: "tomorrow"}, None, "RFC 3339"),
    ({EXPIRE_LABEL: "2030-01-01 00:00:00"}, None, "RFC 3339"),
    ({}, lpb.Resource(id="x", type="bogus"), "unsupported"),
])
def test_bad_lease_input_is_invalid_argument(sv, labels, resource, what):
    client = sv.client()
    lid = sv.id("h13-lease")
    if resource is None:
        code, msg = code_of(client.leases.Create, lpb.CreateRequest(id=lid, labels=labels))
    else:
        client.leases.Create(lpb.CreateRequest(id=lid))
        code, msg = code_of(client.leases.AddResource,
                            lpb.AddResourceRequest(id=lid, resource=resource))
        client.leases.Delete(lpb.DeleteRequest(id=lid))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and what in msg
    assert lid not in [le.id for le in client.leases.List(lpb.ListRequest()).leases]


def test_roots_and_collect_on_the_store(tmp_path):
    store = Store(str(tmp_path / "meta.db"))
    try:
        leases = Leases(store)
        now = time.time()
        leases.create("ns", "keep", {})
        leases.create("ns", "soon", {EXPIRE_LABEL: _rfc3339(now + 100)})
        leases.add_resource("ns", "keep", "sha256:1", "content")
        leases.add_resource("ns", "soon", "snap-1", "snapshots/overlayfs")
        assert leases.next_expiry() == pytest.approx(int(now + 100), abs=1)
        assert leases.roots("ns") == {("content", "sha256:1"), ("snapshots/overlayfs", "snap-1")}
        assert leases.collect(now + 50) == 0
        assert leases.collect(now + 200) == 1
        assert leases.roots("ns") == {("content", "sha256:1")}
        assert [lid for lid, _, _ in leases.list("ns")] == ["keep"]
        assert leases.next_expiry() is None
    finally:
        store.close()


def test_parse_expire_reads_go_times():
    assert parse_expire("2030-01-01T00:00:00Z") == 1893456000
    assert parse_expire("2030-01-01T01:00:00.123456789+01:00") == pytest.approx(1893456000.123)
    with pytest.raises(InvalidArgument):
        parse_expire("2030-01-01")
