import sys

from vict.cli import main

sys.exit(main())
