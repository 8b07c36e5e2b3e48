"""A gzip writer that deflates on several cores and still writes the same bytes every time.

Python's gzip module deflates on one thread (~50 MB/s here), which makes packaging a large
weight file slow. Deflate runs on zlib-ng (the same format, about 1.8x zlib's speed on float
weights at level 6), and this writer uses pigz's technique: the uncompressed stream is cut into
fixed-size blocks, each block is deflated on its own thread (zlib releases the GIL), primed
with the previous block's last 32 KiB as dictionary, and ended with a sync flush so the raw
deflate streams simply concatenate; the last block is finished with Z_FINISH. The result is ONE
ordinary gzip member with a fixed header (mtime 0, no file name), readable by gzip, tar, Python
and Triton alike.

The output depends only on the input bytes, the level and the block size, never on the number
of threads or on how the caller sliced its writes: blocks are cut at fixed offsets and written
in order. The bytes are those of one zlib-ng release (DEFLATE_LIBRARY names it for manifests).

A deflated block is a function of (level, last, dictionary, data) only, so blocks already
deflated in this process are reused (``BlockCache``): the tenants of a model family share their
packed envs byte for byte, and the packager places each large member at a block boundary
(build/package.py), so packaging the next tenant deflates little more than its own weights.
"""

from __future__ import annotations

import hashlib
import os
import struct
import threading
import zlib
from collections import OrderedDict, deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import BinaryIO

from zlib_ng import zlib_ng

BLOCK_SIZE = 1 << 20  # 1 MiB, as in pigz's default 128 KiB * 8: large enough to amortise flushes
DICTIONARY_SIZE = 32 * 1024  # deflate's window
DEFAULT_LEVEL = 6  # zlib-ng's level 1 stores float weights *larger* than they are; 6 does not
DEFLATE_LIBRARY = f"zlib-ng {zlib_ng.ZLIBNG_VERSION}"

# ID1 ID2 CM=deflate FLG=0 MTIME=0 XFL=0 OS=255 (unknown): no name, no time, same on every OS.
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"


class BlockCache:
    """Deflated blocks by the digest of everything their bytes depend on; least recently used
    dropped beyond ``max_bytes`` of compressed data. Shared by the writers of one process."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._blocks: OrderedDict[bytes, bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(data: bytes, dictionary: bytes, level: int, last: bool) -> bytes:
        digest = hashlib.sha256(bytes([level, last]))
        digest.update(len(dictionary).to_bytes(8, "little"))
        digest.update(dictionary)
        digest.update(data)
        return digest.digest()

    def get(self, key: bytes) -> bytes | None:
        with self._lock:
            found = self._blocks.get(key)
            if found is None:
                self.misses += 1
                return None
            self._blocks.move_to_end(key)
            self.hits += 1
            return found

    def put(self, key: bytes, deflated: bytes) -> None:
        with self._lock:
            if key in self._blocks or len(deflated) > self.max_bytes:
                return
            self._blocks[key] = deflated
            self._size += len(deflated)
            while self._size > self.max_bytes:
                _, dropped = self._blocks.popitem(last=False)
                self._size -= len(dropped)


# Enough for the packed envs of a family (a few hundred MB compressed); 0 turns reuse off.
BLOCK_CACHE = BlockCache(int(os.environ.get("MMETOOLS_DEFLATE_CACHE_MB", "512")) << 20)


def _deflate_cached(data: bytes, dictionary: bytes, level: int, last: bool) -> bytes:
    """``_deflate_block`` through BLOCK_CACHE (hashing is ~20x faster than deflating)."""
    if BLOCK_CACHE.max_bytes <= 0:
        return _deflate_block(data, dictionary, level, last)
    key = BlockCache.key(data, dictionary, level, last)
    found = BLOCK_CACHE.get(key)
    if found is not None:
        return found
    deflated = _deflate_block(data, dictionary, level, last)
    BLOCK_CACHE.put(key, deflated)
    return deflated


def _deflate_block(data: bytes, dictionary: bytes, level: int, last: bool) -> bytes:
    if dictionary:
        compressor = zlib_ng.compressobj(
            level, zlib_ng.DEFLATED, -zlib_ng.MAX_WBITS, zdict=dictionary
        )
    else:
        compressor = zlib_ng.compressobj(level, zlib_ng.DEFLATED, -zlib_ng.MAX_WBITS)
    # A sync flush ends the block on a byte boundary without the final-block bit, so the next
    # block's raw deflate data can follow directly.
    return compressor.compress(data) + compressor.flush(
        zlib_ng.Z_FINISH if last else zlib_ng.Z_SYNC_FLUSH
    )


class ParallelGzipWriter:
    """A binary file-like sink (``write``/``close``) that gzips into ``raw`` on ``threads`` threads.

    ``raw`` receives the compressed bytes in order; ``sha256``/``compressed_size`` describe them.
    Memory stays bounded: at most ``2 * threads`` blocks are in flight.
    """

    def __init__(
        self,
        raw: BinaryIO,
        *,
        level: int = DEFAULT_LEVEL,
        threads: int | None = None,
        block_size: int = BLOCK_SIZE,
    ) -> None:
        if not 0 <= level <= 9:
            raise ValueError(f"gzip level must be 0-9, got {level}")
        if block_size < DICTIONARY_SIZE:
            raise ValueError(f"block size must be at least {DICTIONARY_SIZE} bytes")
        self._raw = raw
        self._level = level
        self._block_size = block_size
        self._threads = max(1, threads if threads is not None else (os.cpu_count() or 1))
        self._executor = ThreadPoolExecutor(max_workers=self._threads, thread_name_prefix="deflate")
        self._pending: deque[Future[bytes]] = deque()
        self._buffer = bytearray()
        self._dictionary = b""
        self._crc = 0
        self._uncompressed_size = 0
        self._hash = hashlib.sha256()
        self.compressed_size = 0
        self.closed = False
        self._emit(_GZIP_HEADER)

    # -- file-like API used by tarfile ----------------------------------------------------
    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self.closed:
            raise ValueError("write to a closed ParallelGzipWriter")
        view = memoryview(data).cast("B")
        self._buffer += view
        self._crc = zlib.crc32(view, self._crc)
        self._uncompressed_size += len(view)
        # Cut strictly at block_size offsets: the output must not depend on write sizes.
        while len(self._buffer) > self._block_size:
            block = bytes(self._buffer[: self._block_size])
            del self._buffer[: self._block_size]
            self._submit(block, last=False)
        return len(view)

    def flush(self) -> None:
        """Nothing to do: blocks are only complete at fixed offsets (tarfile calls this)."""

    def tell(self) -> int:
        return self._uncompressed_size

    @property
    def block_size(self) -> int:
        return self._block_size

    def close(self) -> None:
        """Compress what is left, write the gzip trailer and stop the threads."""
        if self.closed:
            return
        try:
            self._submit(bytes(self._buffer), last=True)
            self._buffer = bytearray()
            while self._pending:
                self._emit(self._pending.popleft().result())
            self._emit(struct.pack("<II", self._crc, self._uncompressed_size & 0xFFFFFFFF))
        finally:
            self.closed = True
            self._executor.shutdown(wait=True, cancel_futures=True)

    def abort(self) -> None:
        """Stop without finishing the stream (the caller discards the output)."""
        self.closed = True
        self._executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> ParallelGzipWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, traceback: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    # -- results ----------------------------------------------------------------------
    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    @property
    def uncompressed_size(self) -> int:
        return self._uncompressed_size

    # -- internals ----------------------------------------------------------------------
    def _submit(self, block: bytes, *, last: bool) -> None:
        future = self._executor.submit(_deflate_cached, block, self._dictionary, self._level, last)
        self._pending.append(future)
        # Blocks other than the last are at least DICTIONARY_SIZE long (checked in __init__).
        self._dictionary = block[-DICTIONARY_SIZE:]
        # Bounded memory: wait for the oldest block once enough are queued.
        while len(self._pending) > 2 * self._threads:
            self._emit(self._pending.popleft().result())

    def _emit(self, data: bytes) -> None:
        self._raw.write(data)
        self._hash.update(data)
        self.compressed_size += len(data)
