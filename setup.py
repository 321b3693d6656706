"""Build the optional native CPU kernels (kernels/csrc) and the verifier's float64 helper
(verify/csrc) as plain C shared libraries.

No -march flags: the library carries AVX-512, AVX2 and scalar code paths and picks one at
run time. ``optional=True``: if the compiler is missing or fails, linfdist installs anyway
and uses the pure-torch CPU path.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "linfdist.kernels._native",
            sources=["kernels/csrc/linfdist_native.c"],
            depends=[f"kernels/csrc/{name}.h" for name in ("body", "undef_isa", "isa_scalar", "isa_avx2", "isa_avx512")],
            extra_compile_args=["-O3", "-std=gnu11", "-fno-math-errno"],
            extra_link_args=["-pthread"],
            libraries=["m"],
            optional=True,
        ),
        Extension(  # the independent verifier's own float64 kernel: no code shared with kernels/
            "linfdist.verify._maxplus",
            sources=["verify/csrc/maxplus.c"],
            extra_compile_args=["-O3", "-std=gnu11"],
            extra_link_args=["-pthread"],
            optional=True,
        ),
    ]
)
