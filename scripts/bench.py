#!/usr/bin/env python
"""Run the speed benchmark (same as ``nnaudio-export bench``); see nnaudio_export/bench/."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nnaudio_export.bench import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
