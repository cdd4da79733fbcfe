"""The compiled COPY fast paths (``csrc/``, built by setup.py as ``_copy_fast``), or None where they did not build.

In:  nothing; copy_text.py and copy_time.py read :data:`compiled` at each batch (the tests run both ways).
Out: :data:`compiled`: the module, whose answers are those of copy_text.py's and copy_time.py's own fast
     paths (test_copy_fast.py compares them on generated values; test_copy_text.py runs both), or None:
     those Python paths then run.
Fails: never.
"""

from __future__ import annotations

from types import ModuleType

compiled: ModuleType | None
try:
    from . import _copy_fast as compiled
except ImportError:  # no C compiler at install time: the same COPY text, about twice the client's CPU
    compiled = None
