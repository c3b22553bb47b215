"""``python -m demodata --n 1000``: generate the demo corpus and print its statistics."""

import sys

from demodata import main

sys.exit(main())
