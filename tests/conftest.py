"""Suite-wide settings. Tiny models gain nothing from intra-op threads, and two threads fighting
another process for two cores slow a step twentyfold; one thread also keeps pinned losses exact."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
