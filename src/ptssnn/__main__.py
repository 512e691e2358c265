"""``python -m ptssnn`` (and ``torchrun -m ptssnn``) runs the command line."""

from ptssnn.cli import main

if __name__ == "__main__":
    main()
