import sys

from gmemfs.cli import main

sys.exit(main())
