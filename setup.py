"""Build the Cython core: every ``powerrl/_core/*.pyx`` becomes one extension.

``POWERRL_DEBUG=1`` builds with bounds checks, wraparound checks and ``-O0 -g`` so that
out-of-range indices raise instead of corrupting memory; the default build is optimised.
Nothing is downloaded at build time.
"""

import glob
import os

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("POWERRL_DEBUG", "0") not in ("", "0")

directives = {
    "language_level": "3",
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": not DEBUG,
    "embedsignature": True,
}
compile_args = ["-O0", "-g", "-UNDEBUG"] if DEBUG else ["-O3"]

extensions = [
    Extension(
        name=os.path.splitext(path)[0].replace(os.sep, "."),
        sources=[path],
        include_dirs=[np.get_include(), "powerrl/_core"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=compile_args,
        extra_link_args=["-lm", "-lpthread"],
    )
    for path in sorted(glob.glob(os.path.join("powerrl", "_core", "*.pyx")))
]

setup(ext_modules=cythonize(extensions, compiler_directives=directives, annotate=False))
