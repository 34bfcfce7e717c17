import sys

from stt.cli import main

sys.exit(main())
