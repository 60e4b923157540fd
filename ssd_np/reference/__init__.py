"""The reference: the whole graph of ssd_mobilenet_v2_coco in plain NumPy, one small function per graph concept.

Read it in graph order, top to bottom:

    model.py          the pipeline in one page: image -> TF's four outputs, or -> OpenVINO's detection_out
    preprocess.py     ResizeBilinear (TF1 legacy) and (2/255) x - 1; OpenCV's uint8 resize
    mobilenet_v2.py   the architecture table, Conv2D / depthwise / batch norm / ReLU6, the inverted residual block
    box_predictor.py  the six 3x3 heads, reshaped and concatenated to 1917 anchors
    anchors.py        the 1917 anchors (and OpenVINO's PriorBoxClustered priors)
    box_coder.py      decoding box encodings against the anchors; sigmoid scores
    tf_math.py        exp and sigmoid with TF's (and OpenVINO's) exact float32 arithmetic
    nms.py            TF's and OpenVINO's greedy non-maximum suppression
    postprocess.py    per-class NMS and the outputs, both formats
    tracing.py        `record`: how every intermediate enters the trace under its TF node name

Every function names the TF op or graph node it mirrors; every intermediate goes into the trace under that
node's name. This package imports only NumPy: it runs without numba (and with NUMBA_DISABLE_JIT=1). The fast
engine (`ssd_np.engine`) computes the same graph and is held to this one by the tests.
"""
