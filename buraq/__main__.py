import sys

from buraq.cli import main

sys.exit(main())
