"""``python -m fastgd``: the command line."""

import sys

from fastgd._cli import main

if __name__ == "__main__":
    sys.exit(main())
