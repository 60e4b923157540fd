"""Installed as ``ssd_np.release``: the release's small files and the weights manifest.

Nothing to import here; ``ssd_np.weights`` reads these files with importlib.resources.
"""
