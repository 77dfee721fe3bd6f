"""`python -m hooked_bilinear ...` runs the `hooked-bilinear` command line."""

import sys

from hooked_bilinear.cli import main

sys.exit(main())
