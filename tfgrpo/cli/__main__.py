"""`python -m tfgrpo.cli ...` runs the command line."""

from tfgrpo.cli import main

main()
