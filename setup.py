"""The one compiled part of overlayctl: layer/_batchwrite.c, the batch file
writer extraction uses when it is built (pyproject.toml has the rest).

It is optional: without a C compiler the install still succeeds, and
extraction does all its writing from Python.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "overlayctl.layer._batchwrite",
            ["overlayctl/layer/_batchwrite.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-missing-field-initializers", "-Wno-unused-parameter"],
            optional=True,
        )
    ]
)
