"""The parallel deflate writer: valid gzip, identical bytes for any thread count or write size."""

from __future__ import annotations

import gzip
import io
import os
import shutil
import subprocess
import zlib
from pathlib import Path

import pytest

from mmetools.build.parallel_gzip import DICTIONARY_SIZE, ParallelGzipWriter

BLOCK = 64 * 1024  # small blocks so a few hundred KiB cross many block boundaries


def _payload() -> bytes:
    # incompressible, compressible and repetitive-across-blocks parts
    text = b"".join(b"line %d of a vocabulary file\n" % i for i in range(6000))
    return os.urandom(3 * BLOCK + 17) + text + text + bytes(BLOCK * 2) + os.urandom(999)


def _gzip(data: bytes, *, threads: int, chunk: int, level: int = 6) -> bytes:
    sink = io.BytesIO()
    writer = ParallelGzipWriter(sink, level=level, threads=threads, block_size=BLOCK)
    for start in range(0, len(data), chunk):
        writer.write(data[start : start + chunk])
    writer.close()
    assert writer.compressed_size == len(sink.getvalue())
    assert writer.uncompressed_size == len(data)
    return sink.getvalue()


def test_output_decompresses_to_the_input() -> None:
    data = _payload()
    compressed = _gzip(data, threads=2, chunk=10_000)
    assert gzip.decompress(compressed) == data
    # one gzip member, readable by plain zlib too (wbits 31 = gzip wrapper, single member)
    decompressor = zlib.decompressobj(31)
    assert decompressor.decompress(compressed) == data
    assert decompressor.eof and decompressor.unused_data == b""


def test_same_bytes_for_any_thread_count_and_write_size() -> None:
    data = _payload()
    outputs = {
        _gzip(data, threads=threads, chunk=chunk)
        for threads, chunk in ((1, 1), (1, 4096), (2, BLOCK), (3, BLOCK + 1), (8, len(data)))
    }
    assert len(outputs) == 1


def test_fixed_header_and_trailer() -> None:
    data = b"hello " * 1000
    compressed = _gzip(data, threads=2, chunk=100)
    # magic, deflate, no flags (no file name), mtime 0, xfl 0, OS 255
    assert compressed[:10] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    assert compressed[-8:-4] == zlib.crc32(data).to_bytes(4, "little")
    assert compressed[-4:] == len(data).to_bytes(4, "little")


@pytest.mark.parametrize("size", [0, 1, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK])
def test_block_boundaries(size: int) -> None:
    data = os.urandom(size)
    assert gzip.decompress(_gzip(data, threads=2, chunk=BLOCK // 3)) == data


def test_dictionary_keeps_the_ratio_close_to_single_stream_gzip() -> None:
    # Repetitive text across block boundaries: priming each block with the previous 32 KiB keeps
    # the output within a few percent of one-stream gzip at the same level.
    data = b"".join(b"token_%05d\n" % (i % 5000) for i in range(100_000))
    ours = len(_gzip(data, threads=2, chunk=65536))
    reference = len(gzip.compress(data, compresslevel=6))
    assert ours <= reference * 1.05


def test_gzip_tool_accepts_the_output(tmp_path: Path) -> None:
    if shutil.which("gzip") is None:
        pytest.skip("gzip not on PATH")
    path = tmp_path / "x.gz"
    data = _payload()
    path.write_bytes(_gzip(data, threads=2, chunk=50_000))
    subprocess.run(["gzip", "-t", str(path)], check=True)
    assert (
        subprocess.run(["gzip", "-dc", str(path)], capture_output=True, check=True).stdout == data
    )


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="gzip level must be 0-9, got 10"):
        ParallelGzipWriter(io.BytesIO(), level=10)
    with pytest.raises(ValueError, match=f"at least {DICTIONARY_SIZE} bytes"):
        ParallelGzipWriter(io.BytesIO(), block_size=1024)


def test_write_after_close_is_refused() -> None:
    writer = ParallelGzipWriter(io.BytesIO())
    writer.close()
    with pytest.raises(ValueError, match="closed"):
        writer.write(b"x")
