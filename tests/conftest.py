"""Shared test paths. Tests never read ../shared: everything they need is in tests/data or weights/."""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
