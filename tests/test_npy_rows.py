"""Rows of an .npy file written past the page cache (ckvision.data.npy_rows)."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from ckvision.data import npy_rows
from ckvision.data.npy_rows import ALIGN, RowWriter, create_npy

pytestmark = pytest.mark.timeout(60)

U8 = np.dtype(np.uint8)


def _expected(count: int, row_shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(7).integers(0, 256, (count, *row_shape), dtype=np.uint8)


def _write_all(path: Path, rows: np.ndarray, ranges: list[tuple[int, int]]) -> RowWriter:
    """Write ``rows[first:first + count]`` for each range; the writer (closed)."""
    with RowWriter(path, rows.shape[1:], U8) as writer:
        for first, count in ranges:
            at = [first]

            def fill(block: np.ndarray, at: list[int] = at) -> None:
                block[...] = rows[at[0] : at[0] + len(block)]
                at[0] += len(block)

            writer.write(first, count, fill)
    return writer


def test_header_is_padded_to_a_block_and_numpy_reads_it(tmp_path: Path) -> None:
    path = tmp_path / "images.npy"
    create_npy(path, (5, 7, 7, 3), U8)
    array = np.load(path, mmap_mode="r")
    assert array.shape == (5, 7, 7, 3) and array.dtype == U8 and array.offset == ALIGN
    assert not array.any() and path.stat().st_size == ALIGN + 5 * 147


@pytest.mark.parametrize("side", [64, 60, 7])  # rows of 3 blocks; not a block; tiny
def test_rows_written_in_any_order_equal_the_data(tmp_path: Path, side: int) -> None:
    rows = _expected(300, (side, side, 3))
    path = tmp_path / "images.npy"
    create_npy(path, rows.shape, U8)
    # chunks out of order, ranges that cut blocks and rows at odd places
    _write_all(path, rows, [(128, 128), (0, 128), (256, 44)])
    np.testing.assert_array_equal(np.load(path, mmap_mode="r"), rows)


def test_an_unaligned_header_from_an_older_build_is_respected(tmp_path: Path) -> None:
    rows = _expected(40, (60, 60, 3))
    path = tmp_path / "images.npy"
    np.lib.format.open_memmap(path, mode="w+", dtype=U8, shape=rows.shape).flush()
    assert np.load(path, mmap_mode="r").offset % ALIGN != 0
    _write_all(path, rows, [(0, 40)])
    np.testing.assert_array_equal(np.load(path, mmap_mode="r"), rows)


def test_block_rows_bound_the_buffers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(npy_rows, "BLOCK_BYTES", 3 * 10800)
    rows = _expected(20, (60, 60, 3))
    path = tmp_path / "images.npy"
    create_npy(path, rows.shape, U8)
    sizes: list[int] = []
    with RowWriter(path, (60, 60, 3), U8) as writer:
        assert writer.block_rows == 3

        def fill(block: np.ndarray) -> None:
            block[...] = rows[sum(sizes) : sum(sizes) + len(block)]
            sizes.append(len(block))

        writer.write(0, 20, fill)
    assert sizes == [3, 3, 3, 3, 3, 3, 2]
    np.testing.assert_array_equal(np.load(path, mmap_mode="r"), rows)


@pytest.mark.skipif(shutil.which("fincore") is None, reason="needs util-linux's fincore")
def test_aligned_rows_bypass_the_page_cache(tmp_path: Path) -> None:
    probe = tmp_path / "probe"
    probe.touch()
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_DIRECT))
    except OSError:
        pytest.skip(f"{tmp_path}'s file system refuses O_DIRECT")
    rows = _expected(256, (64, 64, 3))  # 12 MiB
    path = tmp_path / "images.npy"
    create_npy(path, rows.shape, U8)
    assert _write_all(path, rows, [(0, 256)]) is not None
    resident = subprocess.run(  # noqa: S603 - argument list, no shell
        ["fincore", "--bytes", "--noheadings", "--output", "RES", str(path)],  # noqa: S607
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert int(resident) <= ALIGN  # the header's page at most, not 12 MiB of rows
    np.testing.assert_array_equal(np.load(path, mmap_mode="r"), rows)


@pytest.mark.parametrize("refused_at", ["open", "write"])
def test_without_o_direct_the_page_cache_serves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, refused_at: str
) -> None:
    real_open, real_pwrite = os.open, os.pwrite
    direct_fds: set[int] = set()

    def opening(path: str, flags: int, *args: int) -> int:
        if flags & os.O_DIRECT and refused_at == "open":
            raise OSError(errno.EINVAL, "Invalid argument")
        fd = real_open(path, flags, *args)
        if flags & os.O_DIRECT:
            direct_fds.add(fd)
        return fd

    def pwrite(fd: int, data: memoryview, offset: int) -> int:
        if fd in direct_fds:  # a file system that takes the flag, then refuses the write
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(npy_rows.os, "open", opening)
    monkeypatch.setattr(npy_rows.os, "pwrite", pwrite)
    rows = _expected(50, (64, 64, 3))
    path = tmp_path / "images.npy"
    create_npy(path, rows.shape, U8)
    assert not _write_all(path, rows, [(0, 50)]).direct
    np.testing.assert_array_equal(np.load(path, mmap_mode="r"), rows)


def test_a_write_error_is_raised_by_write_and_a_fill_error_as_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "images.npy"
    create_npy(path, (10, 64, 64, 3), U8)
    with RowWriter(path, (64, 64, 3), U8) as writer:

        def broken(block: np.ndarray) -> None:
            raise ValueError("cannot decode")

        with pytest.raises(ValueError, match="cannot decode"):
            writer.write(0, 10, broken)

        def full(fd: int, data: memoryview, offset: int) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(npy_rows.os, "pwrite", full)
        with pytest.raises(OSError, match="No space left"):
            writer.write(0, 10, lambda block: None)
        monkeypatch.undo()
        writer.write(0, 10, lambda block: block.fill(9))  # usable again afterwards
    assert (np.load(path, mmap_mode="r") == 9).all()
