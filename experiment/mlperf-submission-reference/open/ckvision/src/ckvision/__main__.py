import sys

from ckvision.cli import main

sys.exit(main())
