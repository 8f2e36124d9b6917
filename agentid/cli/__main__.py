import sys

from agentid.cli import main

sys.exit(main())
