"""Build script for fastgd's compiled (Cython) kernels.

All metadata lives in ``pyproject.toml``; this file only declares the Cython
extensions, which need NumPy's include directory at build time.
"""

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

CYTHON_DIRECTIVES = {
    "language_level": 3,
    "boundscheck": False,
    "wraparound": False,
    "cdivision": True,
    "initializedcheck": False,
}

extensions = [
    Extension(
        "fastgd._kernels.linear._sgd_fast",
        ["fastgd/_kernels/linear/_sgd_fast.pyx"],
        include_dirs=[np.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=["-O3"],
    ),
]

setup(ext_modules=cythonize(extensions, compiler_directives=CYTHON_DIRECTIVES))
