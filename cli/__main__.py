"""python -m cli: the message-archiver command without its installed script."""

import sys

from cli import main

sys.exit(main())
