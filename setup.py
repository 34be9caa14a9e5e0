"""The compiled parts of overlayctl (pyproject.toml has the rest):
layer/_batchwrite.c, the batch file writer extraction uses, and
runtime/_kernel.c, syscall(2) for runtime/syscalls.py without loading ctypes.

Both are optional: without a C compiler the install still succeeds,
extraction does all its writing from Python and syscalls.py goes through
ctypes, each a little slower.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "overlayctl.layer._batchwrite",
            ["overlayctl/layer/_batchwrite.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-missing-field-initializers", "-Wno-unused-parameter"],
            optional=True,
        ),
        Extension(
            "overlayctl.runtime._kernel",
            ["overlayctl/runtime/_kernel.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        ),
    ]
)
