"""Skip the doctests of an adapter whose framework is not installed (CI installs both)."""

from __future__ import annotations

import importlib.util
import os

os.environ.setdefault("KERAS_BACKEND", "torch")

collect_ignore = [f"adapters/{name}.py" for name in ("keras", "torch") if importlib.util.find_spec(name) is None]
