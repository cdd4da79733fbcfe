"""The project's metadata is pyproject.toml's; this adds the compiled COPY fast paths (move/csrc/).

``optional``: where no C compiler is, the install still succeeds and copy_text.py's pure-Python fast paths
run instead (the same COPY text, slower; move/native.py).
"""

from glob import glob

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "migration_pipeline.move._copy_fast",
            sorted(glob("migration_pipeline/move/csrc/*.c")),
            depends=sorted(glob("migration_pipeline/move/csrc/*.h")),
            libraries=["sqlite3"],  # read.c: the SQLite the sqlite3 module links (Debian's libsqlite3-dev)
            optional=True,
            extra_compile_args=[
                "-O2",
                "-Wall",
                "-Wextra",
                "-Wno-unused-parameter",
                "-Wno-missing-field-initializers",
            ],
        )
    ]
)
