#!/usr/bin/env python
"""Per-chunk latency of a streaming bundle at batch 1 (same as ``nnaudio-export bench
--streaming``; see nnaudio_export/bench/streaming.py):

    python scripts/bench_streaming.py [--presets kaldi_fbank_80] [--chunks-ms 10,100]
        [--stream-seconds 20] [--threads 1] [--out build/bench]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nnaudio_export.bench import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["--streaming"] + sys.argv[1:]))
