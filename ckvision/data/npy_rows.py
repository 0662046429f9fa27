"""Rows of a large ``.npy`` file written from many processes, past the page cache.

The preprocessing build (:mod:`ckvision.data.build`) writes 50,000 rows of 150 KB each
(7.5 GB). Written through the page cache (a memory map, or ``pwrite``), every row
costs fresh kernel pages and their writeback, on the cores that decode: measured here
(2 vCPUs, 3,000 synthetic images, interleaved with the raw loop) that was 7 % more CPU
per image, against 1-2 % with direct I/O.

- :func:`create_npy` makes the file with its header padded to :data:`ALIGN` bytes, so
  a row range starts on a block boundary whenever its byte offset does; ``numpy.load``
  reads it as any other ``.npy`` file.
- :class:`RowWriter` fills rows into page-aligned buffers and hands each full buffer to a
  thread that writes it with ``O_DIRECT`` while the caller fills the next one: the caller
  waits on the disk only when it outruns it. The part of a range that does not start or
  end on a block boundary is written through the page cache (a row is rarely a whole
  number of blocks), and so is everything when the file system refuses ``O_DIRECT``.
- Durability is the caller's: ``fdatasync`` the file before trusting its rows (that also
  flushes the device's cache, which ``O_DIRECT`` does not).
"""

from __future__ import annotations

import errno
import mmap
import os
import queue
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import numpy as np

__all__ = ["ALIGN", "BLOCK_BYTES", "RowWriter", "create_npy", "data_offset"]

ALIGN = 4096  # O_DIRECT's offset, length and address unit: a page covers every block size
BLOCK_BYTES = 4 << 20  # rows handed to the writing thread at a time
_BUFFERS = 2  # one being filled, one being written


def create_npy(path: Path, shape: tuple[int, ...], dtype: np.dtype) -> None:
    """Create ``path``: a version 1.0 ``.npy`` file of ``shape`` zeros (sparse), its data
    starting at :data:`ALIGN`."""
    header: dict[str, object] = {
        "descr": np.lib.format.dtype_to_descr(dtype),
        "fortran_order": False,
        "shape": tuple(int(n) for n in shape),
    }
    text = repr(header).encode("latin1")
    magic = np.lib.format.magic(1, 0)
    fill = ALIGN - len(magic) - 2 - len(text) - 1
    if fill < 0:
        raise ValueError(f"an .npy header of {len(text)} bytes does not fit in {ALIGN}")
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    with open(path, "wb") as out:
        out.write(magic + struct.pack("<H", ALIGN - len(magic) - 2) + text + b" " * fill + b"\n")
        out.truncate(ALIGN + nbytes)


def data_offset(path: Path) -> int:
    """Where the data of the ``.npy`` file ``path`` starts (from its own header)."""
    array = np.load(path, mmap_mode="r")
    try:
        return int(array.offset)
    finally:
        del array


def _pwrite_all(fd: int, view: memoryview, offset: int) -> None:
    while view:
        done = os.pwrite(fd, view, offset)
        if done <= 0:
            raise OSError(errno.EIO, "short write")
        view, offset = view[done:], offset + done


class RowWriter:
    """Write rows ``first..`` of the ``.npy`` file ``path`` (see the module doc).

    ``writer.write(first, count, fill)`` calls ``fill(rows)`` with a writable
    ``(n, *row_shape)`` array for each block of the range, and returns once every row of
    the range is written (errors of the writing thread are raised there). A writer serves
    one process; :meth:`close` (or ``with``) stops its thread and closes its files.
    """

    def __init__(self, path: Path, row_shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.row_shape, self.dtype = row_shape, dtype
        self.row_bytes = int(np.prod(row_shape, dtype=np.int64)) * dtype.itemsize
        self.offset = data_offset(path)
        self.block_rows = max(1, BLOCK_BYTES // self.row_bytes)
        self._buffered = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        self._direct: int | None = None
        try:
            self._direct = os.open(path, os.O_WRONLY | os.O_CLOEXEC | os.O_DIRECT)
        except (OSError, AttributeError):  # a file system without it, or no O_DIRECT
            self._direct = None
        size = self.block_rows * self.row_bytes + 2 * ALIGN
        self._free: queue.Queue[mmap.mmap] = queue.Queue()
        for _ in range(_BUFFERS):
            self._free.put(mmap.mmap(-1, size))
        self._todo: queue.Queue[tuple[mmap.mmap, int, int, int] | None] = queue.Queue()
        self._errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._drain, name="ckvision-rows", daemon=True)
        self._thread.start()

    @property
    def direct(self) -> bool:
        """Whether the aligned part of each block bypasses the page cache."""
        return self._direct is not None

    def write(self, first: int, count: int, fill: Callable[[np.ndarray], None]) -> None:
        for start in range(first, first + count, self.block_rows):
            rows = min(self.block_rows, first + count - start)
            where = self.offset + start * self.row_bytes
            buffer = self._free.get()
            skew = where % ALIGN  # the buffer's bytes sit at the file's offsets mod ALIGN
            view = np.frombuffer(buffer, self.dtype, rows * self.row_bytes // self.dtype.itemsize,
                                 skew).reshape(rows, *self.row_shape)  # fmt: skip
            try:
                fill(view)
            except BaseException:
                self._free.put(buffer)
                raise
            finally:
                del view
            self._todo.put((buffer, skew, where, rows * self.row_bytes))
        self._todo.join()
        if self._errors:
            error = self._errors[0]
            self._errors.clear()
            raise error

    def _drain(self) -> None:
        while (item := self._todo.get()) is not None:
            buffer, skew, where, nbytes = item
            try:
                if not self._errors:
                    self._write(memoryview(buffer)[skew : skew + nbytes], where)
            except BaseException as err:  # noqa: BLE001 - raised again in write()
                self._errors.append(err)
            finally:
                self._free.put(buffer)
                self._todo.task_done()
        self._todo.task_done()

    def _write(self, view: memoryview, where: int) -> None:
        end = where + len(view)
        body, tail = -(-where // ALIGN) * ALIGN, end // ALIGN * ALIGN
        if self._direct is not None and body < tail:
            try:
                _pwrite_all(self._direct, view[body - where : tail - where], body)
            except OSError as err:
                if err.errno != errno.EINVAL:
                    raise
                os.close(self._direct)  # accepted at open, refused at write: page cache
                self._direct = None
            else:
                _pwrite_all(self._buffered, view[: body - where], where)
                _pwrite_all(self._buffered, view[tail - where :], tail)
                return
        _pwrite_all(self._buffered, view, where)

    def close(self) -> None:
        if self._thread.is_alive():
            self._todo.put(None)
            self._thread.join()
        for fd in (self._direct, self._buffered):
            if fd is not None:
                os.close(fd)
        self._direct = None

    def __enter__(self) -> RowWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
