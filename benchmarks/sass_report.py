"""Print what the Triton kernels' hot loops issue on an H100 (sm_90), from the compiled code.

Needs no GPU: Triton compiles for sm_90 here and nvdisasm (shipped with Triton)
reads the result. The floor for ℓ∞-dist is 2 instructions per output element
(subtract, max); the arg-max costs 2 more (compare, select index).

    python benchmarks/sass_report.py            # the first autotune config of each kernel
    python benchmarks/sass_report.py --all      # every autotune config
"""

import os
import sys

if os.environ.pop("TRITON_INTERPRET", None):
    print("note: ignoring TRITON_INTERPRET (compiling needs the JIT)", file=sys.stderr)

from linfdist.kernels.triton_static import main  # noqa: E402

if __name__ == "__main__":
    main()
