import sys

from some_tools.top.app import main

sys.exit(main())
