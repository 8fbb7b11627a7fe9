import sys

from .cli import main

if __name__ == "__main__":  # nnU-Net's worker pools spawn: keep the guard
    sys.exit(main())
