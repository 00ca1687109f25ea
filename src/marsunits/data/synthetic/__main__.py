"""``python -m marsunits.data.synthetic``: see :mod:`marsunits.data.synthetic.cli`."""

import sys

from marsunits.errors import quiet_interrupt_at_start

# The CLI's imports (torch, through the dataset module: seconds) under the stop guard: a Ctrl-C there printed
# a traceback, a SIGTERM ended the command without a word. The CLI handles stops itself once it runs.
with quiet_interrupt_at_start("python -m marsunits.data.synthetic"):
    from marsunits.data.synthetic.cli import main

sys.exit(main())
