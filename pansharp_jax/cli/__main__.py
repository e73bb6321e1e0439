"""``python -m pansharp_jax.cli``: the ``pansharp`` command."""

import sys

from pansharp_jax.cli.main import main

sys.exit(main())
