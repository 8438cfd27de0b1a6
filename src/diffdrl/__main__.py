import sys

from diffdrl.cli import main

sys.exit(main())
