"""`python -m cekura_sessions`: the same as the `cekura-sessions` command."""

import sys

from cekura_sessions.cli.main import main

sys.exit(main())
