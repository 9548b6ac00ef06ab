import sys

from supervisor.shim import main

sys.exit(main())
