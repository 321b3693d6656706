"""Print the constants of vpow_general (body.h) and its log2 tables (linfdist_native.c).

Near-minimax polynomial fits by least squares at 4000 Chebyshev nodes, in float64, printed as float32
with 9 significant digits (which round-trips exactly):

- log2(1 + r) = r q(r), q of degree 5, over r in [-1/8, 1/9] (the reduced range: the mantissa's quarter
  midpoints c_0..c_2, and c_3 = 1 for m / 2 in [7/8, 1)); absolute error.
- 2^f = 1 + f P(f), P of degree 4, over f in [-1/2, 1/2]; relative error, exact at f = 0.

tests/test_native_kernels.py checks that the sources hold what this prints.
"""

import numpy as np


def nodes(lo, hi, count=4000):
    return (np.cos(np.linspace(0, np.pi, count)) * (hi - lo) + (hi + lo)) / 2


def log2_fit():
    r = nodes(-1 / 8, 1 / 9)
    basis = np.stack([r ** (j + 1) for j in range(6)], 1)
    return np.linalg.lstsq(basis, np.log2(1 + r), rcond=None)[0]


def exp2_fit():
    f = nodes(-0.5, 0.5)
    basis = np.stack([f ** (j + 1) for j in range(5)], 1) / np.exp2(f)[:, None]
    return np.linalg.lstsq(basis, 1 - 1 / np.exp2(f), rcond=None)[0]


def tables():
    inverse = [np.float32(1 / (1 + (i + 0.5) / 4)) for i in range(3)] + [np.float32(0.5)]
    log2c = [np.float32(-np.log2(np.float64(v)) - (i >= 2)) for i, v in enumerate(inverse)]
    return inverse, log2c


def c_float(value):
    return "%.9gf" % np.float32(value)


def main():
    inverse, log2c = tables()
    print("#define LOG2_INV_C_ " + ", ".join(c_float(v) for v in inverse))
    print("#define LOG2_C_ " + ", ".join(c_float(v) if v else "0.0f" for v in log2c))
    print("log2(1 + r) / r, highest degree first: " + ", ".join(c_float(v) for v in log2_fit()[::-1]))
    print("(2^f - 1) / f, highest degree first: " + ", ".join(c_float(v) for v in exp2_fit()[::-1]))


if __name__ == "__main__":
    main()
