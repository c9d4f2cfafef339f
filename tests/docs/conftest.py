"""tests/docs read the Markdown through doctext.py, beside this file."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
