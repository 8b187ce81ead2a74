import sys

from some_tools.claims.experiment import main

sys.exit(main())
