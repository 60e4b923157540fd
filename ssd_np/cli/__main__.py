"""`python -m ssd_np.cli ...`: the same as the `ssd-np` command."""
import sys

from ssd_np.cli.main import main

sys.exit(main())
