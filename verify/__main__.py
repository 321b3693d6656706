import sys

from linfdist.verify.cli import main

sys.exit(main())
