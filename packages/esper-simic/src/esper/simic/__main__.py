"""``python -m esper.simic``: the ``esper-train`` command without its console script.

Worker processes are launched this way (``sys.executable -m esper.simic ppo ...``), which needs no
script on ``PATH`` and runs under exactly the interpreter that launched them.
"""

import sys

from esper.simic.cli import main

if __name__ == "__main__":
    sys.exit(main())
