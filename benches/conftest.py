import os
import sys

# The benchmarks import their baselines (benches/baselines.py) as top-level modules.
sys.path.insert(0, os.path.dirname(__file__))
