"""Knowledge: a guild's documents, chunked, embedded and searched for each chat turn."""

from __future__ import annotations

import os

# One BLAS thread (unless the operator says otherwise), set before numpy is first imported (by
# bot/knowledge/index.py): a search is one matrix-vector product, bound by memory, and
# OpenBLAS's threads only fought the event loop for the CPU (bench/knowledge.py: a 1,000-chunk
# search took 8 ms with them on a busy 2-core machine, 0.3 ms without).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
