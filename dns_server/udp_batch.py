"""UDP in batches: ``recvmmsg(2)`` and ``sendmmsg(2)``, one system call for many datagrams.

Through an asyncio transport every query costs one ``recvmsg`` and one ``sendmsg``, and the
kernel's per-call cost (entry, exit, a wake-up of the client per reply) is most of the
server's time (docs/benchmarks.md). Here, when the socket is readable, one ``recvmmsg``
takes up to ``batch`` waiting datagrams into fixed buffers, each is answered, and one
``sendmmsg`` sends every reply to its sender; repeated until the socket is drained. This is
how NSD and Knot read their sockets. The system calls go through ``ctypes`` (the standard
library has no binding for them), so this is Linux only: :func:`available` says whether it
can be used, and the server falls back to the asyncio transport where it cannot.

While datagrams come one at a time (a moderate rate: the socket holds one when it wakes the
server), a batch costs more than it saves: each wake-up then takes its datagram with a plain
``recvfrom_into`` (a buffer made once) and answers with ``sendto``. A wake-up that finds its
datagram already waiting the moment the previous one was done switches to batches; a batch
of one switches back.

The C structures are declared with ``ctypes.Structure`` and set up once: every receive slot
has its buffer and its peer-address slot, and send slot ``i`` replies to the address of
receive slot ``i``. Per batch, the lengths received are read with one strided memoryview
slice, the replies are copied into the send buffer with one ``join`` and their iovecs
written with one slice assignment; the per-datagram Python is the answer itself.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import errno
import logging
import socket
import struct
from array import array
from collections.abc import Callable, Sequence
from itertools import accumulate
from time import perf_counter
from typing import Literal

from dns_server.metrics import HotCounter

log = logging.getLogger(__name__)

BATCHES = HotCounter("dnsrace_dns_udp_batches",
                     "Receive calls that returned UDP queries (batches answered at once: "
                     "recvmmsg, or recvfrom while they come one at a time)")
BATCHED_DATAGRAMS = HotCounter("dnsrace_dns_udp_batched_datagrams",
                               "UDP queries taken by those calls (divided by the batches: the "
                               "mean batch)")

RECEIVE_SLOT = 65_536
"""Bytes per received datagram: any UDP datagram fits (a longer one is impossible)."""
SEND_SLOT = 4096
"""Bytes per reply at most; UDP replies are at most the client's size, never over 1232."""
NAME_SLOT = 128
"""Bytes per peer address (``struct sockaddr_storage``)."""
BATCHES_PER_TURN = 4
"""Batches answered per readable event before the event loop runs its other callbacks (zone
changes, /metrics, TCP): under a flood the socket stays readable, and the loop comes back."""
BUSY_GAP_S = 15e-6
"""A wake-up this soon after the previous one was done means the datagram was waiting when
the event loop looked (no sleep, no wake-up between): they come faster than one at a time is
answered, so the next wake-up takes a batch. A batch of one goes back to one at a time."""
MSG_DONTWAIT = 0x40
_WORD: Literal["Q", "I"] = "Q" if ctypes.sizeof(ctypes.c_size_t) == 8 else "I"
"""``array`` and ``memoryview`` code of a pointer / ``size_t`` (they are the same size)."""

Respond = Callable[[bytes, bool], "bytes | None"]


class _IoVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _MsgHdr(ctypes.Structure):
    _fields_ = [("msg_name", ctypes.c_void_p), ("msg_namelen", ctypes.c_uint32),
                ("msg_iov", ctypes.POINTER(_IoVec)), ("msg_iovlen", ctypes.c_size_t),
                ("msg_control", ctypes.c_void_p), ("msg_controllen", ctypes.c_size_t),
                ("msg_flags", ctypes.c_int)]


class _MMsgHdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _MsgHdr), ("msg_len", ctypes.c_uint)]


def _libc() -> ctypes.CDLL | None:
    path = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(path, use_errno=True)
        recv, send = libc.recvmmsg, libc.sendmmsg
    except (OSError, AttributeError, TypeError):
        return None
    recv.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_void_p]
    send.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
    recv.restype = send.restype = ctypes.c_int
    return libc


_LIBC = _libc()


def available() -> bool:
    """True where the C library has recvmmsg and sendmmsg (Linux)."""
    return _LIBC is not None


def _view(array: ctypes.Array[_MMsgHdr] | ctypes.Array[_IoVec]) -> memoryview:
    """The bytes of a ctypes array, writable."""
    raw = (ctypes.c_char * ctypes.sizeof(array)).from_buffer(array)
    return memoryview(raw).cast("B")


class UdpBatchServer:
    """Answers the datagrams of a bound, non-blocking UDP socket with ``respond``."""

    def __init__(self, sock: socket.socket, respond: Respond, batch: int = 64) -> None:
        if _LIBC is None:
            raise OSError("recvmmsg/sendmmsg are not available (Linux only)")
        if batch < 1:
            raise ValueError("batch must be >= 1")
        self.sock = sock
        self.batch = batch
        self._respond = respond
        self._recvmmsg = _LIBC.recvmmsg
        self._sendmmsg = _LIBC.sendmmsg
        self._loop: asyncio.AbstractEventLoop | None = None
        self.closed: asyncio.Future[None] | None = None

        address_size = 28 if sock.family == socket.AF_INET6 else 16  # sockaddr_in6 / _in
        self._received = ctypes.create_string_buffer(batch * RECEIVE_SLOT)
        self._replies = ctypes.create_string_buffer(batch * SEND_SLOT)
        self._names = ctypes.create_string_buffer(batch * NAME_SLOT)
        self._recv_iov = (_IoVec * batch)()
        self._send_iov = (_IoVec * batch)()
        self._recv_msgs = (_MMsgHdr * batch)()
        self._send_msgs = (_MMsgHdr * batch)()
        received = ctypes.addressof(self._received)
        self._replies_at = ctypes.addressof(self._replies)
        self._names_at = ctypes.addressof(self._names)
        for i in range(batch):
            self._recv_iov[i].iov_base = received + i * RECEIVE_SLOT
            self._recv_iov[i].iov_len = RECEIVE_SLOT
            for msgs, iov in ((self._recv_msgs, self._recv_iov), (self._send_msgs,
                                                                   self._send_iov)):
                header = msgs[i].msg_hdr
                header.msg_name = self._names_at + i * NAME_SLOT
                header.msg_namelen = address_size  # the kernel writes the same size back
                header.msg_iov = ctypes.pointer(iov[i])
                header.msg_iovlen = 1
        self._received_view = memoryview(self._received).cast("B")
        self._replies_view = memoryview(self._replies).cast("B")
        self._send_view = _view(self._send_msgs)
        self._send_iov_words = _view(self._send_iov).cast(_WORD)
        """The send iovecs as machine words: base, length, base, length..."""
        header_size = ctypes.sizeof(_MMsgHdr)
        word = struct.calcsize("I")
        assert header_size % word == 0 and _MMsgHdr.msg_len.offset % word == 0
        self._recv_words = _view(self._recv_msgs).cast("I")
        self._len_first = _MMsgHdr.msg_len.offset // word
        self._len_stride = header_size // word
        self._header_size = header_size
        self._pointer = struct.Struct("P")
        self._name_offset = _MsgHdr.msg_name.offset
        self._shifted = False
        """Some send slots reply to another slot's peer (see :meth:`_address`)."""
        self._batches, self._datagrams = BATCHES.tally(), BATCHED_DATAGRAMS.tally()
        self._single = True
        """Receive one datagram per wake-up (they come one at a time), else in batches."""
        self._last_done = 0.0
        """When the last wake-up was done (``perf_counter``)."""
        self._single_buffer = bytearray(RECEIVE_SLOT)
        self._single_view = memoryview(self._single_buffer)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.closed = self._loop.create_future()
        self._loop.add_reader(self.sock.fileno(), self._readable)

    def close(self) -> None:
        if self._loop is not None and self.closed is not None and not self.closed.done():
            self._loop.remove_reader(self.sock.fileno())
            self.sock.close()
            self.closed.set_result(None)

    def _readable(self) -> None:
        """One datagram the plain way while they come one at a time; in batches (receive a
        batch, answer it, send the replies; again until the socket is empty or
        :data:`BATCHES_PER_TURN` batches were answered) once they come faster than that."""
        if self._single:
            waiting = perf_counter() - self._last_done < BUSY_GAP_S
            self._one()
            self._last_done = perf_counter()
            if waiting:
                self._single = False  # it was waiting when we were back: batch the next
            return
        batch = self.batch
        for _ in range(BATCHES_PER_TURN):
            count = self._receive()
            if count <= 1:
                if count == 1:
                    self._send(self._answer(1))
                self._single, self._last_done = True, perf_counter()
                return
            self._send(self._answer(count))
            if count < batch:
                return  # the socket had fewer waiting: wait for the next readable event

    def _one(self) -> None:
        """Receive, answer and send one datagram: ``recvfrom_into`` a buffer made once and
        ``sendto``, the cheapest wake-up when one datagram waits (no batch bookkeeping)."""
        sock = self.sock
        try:
            size, peer = sock.recvfrom_into(self._single_buffer)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            log.debug("recvfrom: %s", e)
            return
        self._batches.n += 1
        self._datagrams.n += 1
        reply = self._respond(self._single_view[:size].tobytes(), False)
        if reply is not None:
            try:
                sock.sendto(reply, peer)
            except OSError as e:  # the send buffer is full, or that peer is refused
                log.debug("sendto: %s", e)

    def _receive(self) -> int:
        count = int(self._recvmmsg(self.sock.fileno(), self._recv_msgs, self.batch,
                                   MSG_DONTWAIT, None))
        if count < 0:
            error = ctypes.get_errno()
            if error not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
                log.debug("recvmmsg: %s", errno.errorcode.get(error, error))
            return 0
        self._batches.n += 1
        self._datagrams.n += count
        return count

    def _answer(self, count: int) -> int:
        """Answer the ``count`` datagrams received; how many replies the send arrays hold.

        A datagram cannot be cut: any UDP payload fits a 64 KiB slot.
        """
        first = self._len_first
        lengths = self._recv_words[first:first + self._len_stride * count:
                                   self._len_stride].tolist()
        received, respond = self._received_view, self._respond
        replies: list[bytes] = []
        sources: list[int] | None = None  # receive slot of each reply, once one is dropped
        for i, length in enumerate(lengths):
            start = i * RECEIVE_SLOT
            reply = respond(received[start:start + length].tobytes(), False)
            if reply is None or len(reply) > SEND_SLOT:
                if sources is None:
                    sources = list(range(len(replies)))
                continue
            replies.append(reply)
            if sources is not None:
                sources.append(i)
        if not replies:
            return 0
        blob = b"".join(replies)
        self._replies_view[:len(blob)] = blob
        sizes = [len(reply) for reply in replies]
        at = self._replies_at
        words = [0] * (2 * len(replies))
        words[0::2] = [at + offset for offset in accumulate(sizes[:-1], initial=0)]
        words[1::2] = sizes
        self._send_iov_words[:len(words)] = array(_WORD, words)
        if sources is not None:
            self._address(sources)
        elif self._shifted:
            self._address(range(self.batch))
        return len(replies)

    def _address(self, sources: Sequence[int]) -> None:
        """Send slot ``j`` replies to the peer of receive slot ``sources[j]``: shifted when
        queries were dropped, back to ``j`` for ``j`` in the next batch that drops none."""
        pack, send, size, name = (self._pointer.pack_into, self._send_view, self._header_size,
                                  self._name_offset)
        for j, source in enumerate(sources):
            pack(send, j * size + name, self._names_at + source * NAME_SLOT)
        self._shifted = any(j != source for j, source in enumerate(sources))

    def _send(self, count: int) -> None:
        """Send the first ``count`` replies; a reply the kernel refuses is dropped (UDP)."""
        fd = self.sock.fileno()
        first = 0
        while first < count:
            messages = ctypes.byref(self._send_msgs, first * self._header_size)
            sent = int(self._sendmmsg(fd, messages, count - first, 0))
            if sent > 0:
                first += sent
                continue
            error = ctypes.get_errno()
            if error == errno.EINTR:
                continue
            if error in (errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS):
                log.debug("send buffer full: %d replies dropped", count - first)
                return
            log.debug("sendmmsg: %s", errno.errorcode.get(error, error))
            first += 1  # that peer's address is refused: skip its reply, send the rest
