"""``python -m runners.chat``: the built-in ``openai`` runner (:mod:`runners.chat.runner`)."""

import sys

from runners.chat.runner import main

sys.exit(main())
