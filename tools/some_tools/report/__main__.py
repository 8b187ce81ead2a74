import sys

from some_tools.report.make import main

sys.exit(main())
