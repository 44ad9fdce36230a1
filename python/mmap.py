"""A stand-in for `mmap`, which CPython for WASI does not have: a sandbox
cannot map files into memory. Libraries import it at module level for an
optional path (pandas' `read_csv(..., memory_map=True)`, `isinstance(x,
mmap.mmap)` checks), so importing works, and mapping raises `OSError` as a
platform without mmap would.
"""

import errno

ACCESS_DEFAULT, ACCESS_READ, ACCESS_WRITE, ACCESS_COPY = 0, 1, 2, 3
MAP_SHARED, MAP_PRIVATE = 1, 2
PROT_READ, PROT_WRITE = 1, 2
PAGESIZE = ALLOCATIONGRANULARITY = 65536  # a WebAssembly page

error = OSError


class mmap:
    def __init__(self, *args, **kwargs):
        raise OSError(errno.ENOTSUP, "mmap is not available in the Taipan sandbox")
