"""Half-a-minute sanity check of an install: the test suite's fast tests (those that start nothing and train nothing).

    python debug/quick_test.py [-- PYTEST ARGS]

Runs `pytest -m "not slow"`: data, format, tokenizer, model, KV cache, loss mask, configs, the
scorer; the tests that start a subprocess or train a model (marked slow) are left to `python -m pytest`.
"""

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the tests import the project's modules, as `python -m pytest` from the root does

if __name__ == "__main__":
    if {"-h", "--help"} & set(sys.argv[1:]):
        print(__doc__.strip().replace("\n\n", "\n\nusage: python debug/quick_test.py\n\n", 1))
        sys.exit(0)
    os.chdir(ROOT)
    sys.exit(pytest.main(["-q", "-m", "not slow", "tests", *sys.argv[1:]]))
