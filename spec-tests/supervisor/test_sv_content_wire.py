"""Content.Write's hand-split requests (supervisor/api/content_wire.py): for any message the
generated code writes, the fields come out as the generated parser reads them, with ``data`` a
view into the received bytes rather than a copy; a malformed message is refused."""
from __future__ import annotations

import pytest

from supervisor.api.content_wire import WireError, deserializer, split_data
from supervisor.gen.containerd.services.content.v1 import content_pb2 as pb

CASES = [
    pb.WriteContentRequest(action=pb.WRITE, ref="layer-1", offset=5, data=b"x" * 70000),
    pb.WriteContentRequest(action=pb.COMMIT, ref="r", total=1 << 40, expected="sha256:" + "a" * 64,
                           labels={"k": "v", "containerd.io/gc.ref.content.l.0": "d"},
                           data=b"\0\x80\xff" * 3),
    pb.WriteContentRequest(action=pb.STAT, ref="only-stat"),
    pb.WriteContentRequest(),
]


@pytest.mark.parametrize("msg", CASES)
def test_split_matches_the_generated_parser(msg):
    raw = msg.SerializeToString()
    got = deserializer(pb.WriteContentRequest)(raw)
    want = pb.WriteContentRequest.FromString(raw)
    assert isinstance(got.data, memoryview) and got.data.obj is raw  # no copy
    assert bytes(got.data) == want.data
    for field in ("action", "ref", "total", "expected", "offset"):
        assert getattr(got, field) == getattr(want, field)
    assert dict(got.labels) == dict(want.labels)


def test_malformed_messages_are_refused():
    raw = pb.WriteContentRequest(ref="r", data=b"abc").SerializeToString()
    with pytest.raises(WireError):
        split_data(raw[:-1])  # data shorter than its length says
    with pytest.raises(WireError):
        split_data(b"\x08\xff")  # a varint running off the end
    with pytest.raises(WireError):
        split_data(b"\x33")  # wire type 3 (groups): never in this message
    rest, data = split_data(b"")
    assert rest == b"" and bytes(data) == b""
