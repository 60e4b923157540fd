"""The `ssd-np` command line: `main.py` parses and dispatches; one module per command that needs more than a
few lines (`detect`, `evaluate`); `draw` renders annotated images; `errors` holds the exit statuses."""
