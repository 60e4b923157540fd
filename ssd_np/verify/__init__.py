"""Checking other runtimes and the model itself against references.

    trace.py      `ssd-np trace`: every intermediate of one image under its TF node name (run by the reference)
    compare.py    `ssd-np compare`: two traces, tensor by tensor, with the first divergence and layout findings
    coco_eval.py  COCO box AP, identical to pycocotools' COCOeval
"""
