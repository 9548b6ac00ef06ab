"""The bpf(2) syscall and a tiny eBPF assembler — just enough for cgroup device programs.

cgroup v2 has no ``devices`` controller: device access is decided by eBPF programs of type
``BPF_PROG_TYPE_CGROUP_DEVICE`` attached to the cgroup.  This module has no policy; it offers

* :class:`Asm` — builds a program from named instructions with forward jumps to labels and
  encodes it in the kernel's ``struct bpf_insn`` layout (8 bytes: opcode, dst/src registers,
  16-bit offset, 32-bit immediate, little-endian on x86_64);
* :func:`prog_load`, :func:`prog_attach`, :func:`prog_detach`, :func:`prog_query`,
  :func:`prog_get_fd_by_id` — thin wrappers over ``bpf(cmd, attr, size)`` raising
  :class:`~pyrunc.linux.sys.SysError` like every wrapper in :mod:`pyrunc.linux.sys`.

Each ``union bpf_attr`` variant is packed with :mod:`struct`, holding only the fields we use; the
kernel zero-fills the rest when the size passed is smaller than its own union.

The policy (which devices a container may use, in which order rules apply) lives in
:mod:`pyrunc.cgroups.devices`.
"""

import struct

from .sys import SysError, address, buffer, c_int, c_uint, get_errno, syscall

_SYS_bpf = 321  # x86_64

# bpf(2) commands
BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_DETACH = 9
BPF_PROG_GET_FD_BY_ID = 13
BPF_PROG_QUERY = 16

BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6          # attach type
BPF_F_ALLOW_OVERRIDE = 1
BPF_F_ALLOW_MULTI = 2

# struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }
# access_type = (BPF_DEVCG_ACC_* << 16) | BPF_DEVCG_DEV_*
DEVCG_CTX_ACCESS_TYPE = 0
DEVCG_CTX_MAJOR = 4
DEVCG_CTX_MINOR = 8
BPF_DEVCG_ACC_MKNOD = 1
BPF_DEVCG_ACC_READ = 2
BPF_DEVCG_ACC_WRITE = 4
BPF_DEVCG_DEV_BLOCK = 1
BPF_DEVCG_DEV_CHAR = 2

# --- instruction encoding ---------------------------------------------------------------------
# opcode = operation | source | class (ALU/JMP), or mode | size | class (loads/stores)
BPF_LDX = 0x01
BPF_ALU64 = 0x07
BPF_JMP = 0x05
BPF_W = 0x00
BPF_MEM = 0x60
BPF_K = 0x00
BPF_X = 0x08

ALU_OPS = {"add": 0x00, "sub": 0x10, "or": 0x40, "and": 0x50, "lsh": 0x60, "rsh": 0x70,
           "xor": 0xa0, "mov": 0xb0}
JMP_OPS = {"ja": 0x00, "jeq": 0x10, "jgt": 0x20, "jge": 0x30, "jset": 0x40, "jne": 0x50,
           "jlt": 0xa0, "jle": 0xb0}
BPF_EXIT = 0x90

R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10 = range(11)

_INSN = struct.Struct("<BBhi")   # code, (src << 4 | dst), off, imm


def encode(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    """One ``struct bpf_insn``."""
    return _INSN.pack(code, (src << 4) | dst, off, imm)


class Asm:
    """A straight-line eBPF program with forward jumps to named labels.

    >>> a = Asm(); a.mov(R0, 1); a.exit(); len(a.assemble())
    16
    """

    def __init__(self):
        self._insns: list[tuple] = []     # (code, dst, src, off_or_label, imm)
        self._labels: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._insns)

    def _emit(self, code, dst=0, src=0, off=0, imm=0):
        if not -2**31 <= imm < 2**31:
            raise ValueError(f"bpf: immediate {imm} does not fit in 32 bits")
        self._insns.append((code, dst, src, off, imm))

    # dst = *(u32 *)(src + off)
    def ldx_w(self, dst: int, src: int, off: int):
        self._emit(BPF_LDX | BPF_MEM | BPF_W, dst, src, off)

    def alu(self, op: str, dst: int, imm: int | None = None, src: int | None = None):
        """64-bit ALU: ``dst = dst <op> imm`` (or ``<op> src``); ``mov`` assigns."""
        if src is not None:
            self._emit(BPF_ALU64 | ALU_OPS[op] | BPF_X, dst, src)
        else:
            self._emit(BPF_ALU64 | ALU_OPS[op] | BPF_K, dst, 0, 0, imm)

    def mov(self, dst: int, imm: int | None = None, src: int | None = None):
        self.alu("mov", dst, imm, src)

    def jmp(self, op: str, dst: int, imm: int, label: str):
        """``if dst <op> imm goto label`` (forward only)."""
        self._emit(BPF_JMP | JMP_OPS[op] | BPF_K, dst, 0, label, imm)

    def ja(self, label: str):
        self._emit(BPF_JMP | JMP_OPS["ja"], 0, 0, label)

    def exit(self):
        self._emit(BPF_JMP | BPF_EXIT)

    def label(self, name: str):
        if name in self._labels:
            raise ValueError(f"bpf: label {name} defined twice")
        self._labels[name] = len(self._insns)

    def assemble(self) -> bytes:
        """Resolve labels (jump offsets count instructions after the jump) and encode."""
        out = []
        for pc, (code, dst, src, off, imm) in enumerate(self._insns):
            if isinstance(off, str):
                target = self._labels.get(off)
                if target is None:
                    raise ValueError(f"bpf: undefined label {off}")
                off = target - pc - 1
                if off < 0:
                    raise ValueError(f"bpf: backward jump to {self._insns[pc][3]}")
            out.append(encode(code, dst, src, off, imm))
        return b"".join(out)


# --- bpf(2) -----------------------------------------------------------------------------------

# The attribute layouts (struct.pack formats, native byte order, no padding added):
# BPF_PROG_LOAD: prog_type, insn_cnt, insns (pointer), license (pointer), log_level, log_size,
# log_buf (pointer), kern_version, prog_flags, prog_name[16], prog_ifindex, expected_attach_type
_PROG_LOAD = "=IIQQIIQII16sII"
# BPF_PROG_ATTACH/DETACH: target_fd, attach_bpf_fd, attach_type, attach_flags, replace_bpf_fd
_ATTACH = "=IIIII"
# BPF_PROG_QUERY: target_fd, attach_type, query_flags, attach_flags, prog_ids (pointer),
# prog_cnt (in: room, out: count), padding
_QUERY = "=IIIIQII"
_QUERY_CNT_OFFSET = 24
# BPF_PROG_GET_FD_BY_ID: prog_id, next_id, open_flags
_GET_ID = "=III"


def _bpf(cmd: int, attr, op: str) -> int:
    """bpf(cmd, attr, size); ``attr`` is bytes (read by the kernel) or a buffer (read back)."""
    ret = syscall(_SYS_bpf, c_int(cmd), attr, c_uint(len(attr)))
    if ret < 0:
        raise SysError(get_errno(), op)
    return ret


class VerifierError(SysError):
    """The kernel's verifier refused a program; ``log`` holds its explanation."""

    def __init__(self, err: int, log: str):
        super().__init__(err, "bpf prog load")
        self.log = log

    def __str__(self) -> str:
        last = self.log.strip().splitlines()[-1:] or [""]
        return f"{super().__str__()} ({last[0]})" if last[0] else super().__str__()


def prog_load(prog_type: int, code: bytes, license: str = "Apache-2.0", name: str = "",
              expected_attach_type: int = 0) -> int:
    """Load a program and return its fd (close-on-exec).  On refusal, load again with the
    verifier log on, so the error says why."""
    insns = buffer(len(code), code)
    lic = buffer(len(license) + 1, license.encode())

    def attr(log_level: int = 0, log=None) -> bytes:
        return struct.pack(_PROG_LOAD, prog_type, len(code) // 8, address(insns), address(lic),
                           log_level, len(log) if log is not None else 0,
                           address(log) if log is not None else 0, 0, 0, name.encode()[:15],
                           0, expected_attach_type)

    try:
        return _bpf(BPF_PROG_LOAD, attr(), "bpf prog load")
    except SysError as err:
        if err.errno not in (13, 22):  # EACCES/EINVAL: the verifier's answers
            raise
    log = buffer(1 << 16)
    try:
        return _bpf(BPF_PROG_LOAD, attr(1, log), "bpf prog load")
    except SysError as err:
        text = log.raw.split(b"\0", 1)[0].decode(errors="replace")
        raise VerifierError(err.errno, text) from None


def prog_attach(target_fd: int, prog_fd: int, attach_type: int, flags: int = 0) -> None:
    attr = struct.pack(_ATTACH, target_fd, prog_fd, attach_type, flags, 0)
    _bpf(BPF_PROG_ATTACH, attr, "bpf prog attach")


def prog_detach(target_fd: int, prog_fd: int, attach_type: int) -> None:
    attr = struct.pack(_ATTACH, target_fd, prog_fd, attach_type, 0, 0)
    _bpf(BPF_PROG_DETACH, attr, "bpf prog detach")


def prog_query(target_fd: int, attach_type: int) -> list[int]:
    """IDs of the programs attached directly to ``target_fd`` (not inherited ones)."""
    cap = 64
    while True:
        ids = buffer(4 * cap)
        attr = buffer(struct.calcsize(_QUERY),
                      struct.pack(_QUERY, target_fd, attach_type, 0, 0, address(ids), cap, 0))
        try:
            _bpf(BPF_PROG_QUERY, attr, "bpf prog query")
            failure = None
        except SysError as err:
            failure = err
        count = struct.unpack_from("=I", attr.raw, _QUERY_CNT_OFFSET)[0]
        if failure is not None:
            if failure.errno == 28 and count > cap:  # ENOSPC: more than we asked for
                cap = count
                continue
            raise failure
        return list(struct.unpack_from(f"={count}I", ids.raw))


def prog_get_fd_by_id(prog_id: int) -> int:
    return _bpf(BPF_PROG_GET_FD_BY_ID, struct.pack(_GET_ID, prog_id, 0, 0), "bpf prog get fd")
