"""The compiled COPY fast paths (``csrc/``, built by setup.py as ``_copy_fast``), or None where they did not build.

In:  nothing; copy_text.py, copy_time.py, copy_write.py and source.py read :data:`compiled` at each batch
     (the tests run both ways).
Out: :data:`compiled`: the module, whose answers are those of copy_text.py's and copy_time.py's own fast
     paths (test_copy_fast.py compares them on generated values; test_copy_text.py runs both), whose
     reader gives the sqlite3 module's values (test_source.py) and whose binary COPY lands what the text
     COPY does (test_copy_text.py); or None: the Python paths and a text COPY then run.
Fails: never.
"""

from __future__ import annotations

from types import ModuleType

compiled: ModuleType | None
try:
    from . import _copy_fast as compiled
except ImportError:  # no C compiler or SQLite headers at install: the same values, more CPU on both sides
    compiled = None
