"""The weights chain, from the release's TF checkpoint to the HDF5 file the model reads.

    checkpoint.py  TF's tensor_bundle checkpoint format, read and written in pure Python (crc32c.py: its checksums)
    hdf5.py        the weights file: export from a checkpoint, strict loading against the release's manifest
    fetch.py       download the release archive, verify its sha256, export
    standin.py     seeded stand-in weights (NOT the genuine model) for verification
    release/       the release's small files and the manifest of its 344 variables (installed package data)

Nothing here imports the model, the engine or the command line.
"""
