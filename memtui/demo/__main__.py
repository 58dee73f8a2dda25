"""`python -m memtui.demo` runs the demo service in the foreground."""
import sys

from memtui.demo.service import main

sys.exit(main())
