"""``python -m marsunits.data.synthetic``: see :mod:`marsunits.data.synthetic.cli`."""

import sys

from marsunits.data.synthetic.cli import main

sys.exit(main())
