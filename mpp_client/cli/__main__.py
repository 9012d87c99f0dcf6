"""``python -m mpp_client.cli``: the ``mpp`` command without the console script."""

import sys

from . import main

sys.exit(main())
