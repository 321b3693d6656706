"""Build the optional native CPU kernels (kernels/native) and the verifier's float64 helper
(verify/native) as plain C shared libraries.

No -march flags: the library carries AVX-512, AVX2 and scalar code paths and picks one at
run time. ``optional=True``: if the compiler is missing or fails, linfdist installs anyway
and uses the pure-torch CPU path.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "linfdist.kernels._native",
            sources=["kernels/native/linfdist_native.c"],
            depends=["kernels/native/body.h", "kernels/native/undef_isa.h"],
            extra_compile_args=["-O3", "-std=gnu11", "-fno-math-errno"],
            extra_link_args=["-pthread"],
            libraries=["m"],
            optional=True,
        ),
        Extension(  # the independent verifier's own float64 kernel: no code shared with kernels/
            "linfdist.verify._maxplus",
            sources=["verify/native/maxplus.c"],
            extra_compile_args=["-O3", "-std=gnu11"],
            extra_link_args=["-pthread"],
            optional=True,
        ),
    ]
)
