"""`python -m search.cli`: the `ser-search` command."""
import sys

from search.cli import main

sys.exit(main())
