"""The pieces of ``python -m dense_assign.tools.benchmark`` (the command line stays in
``dense_assign/tools/benchmark.py``: its parser, ``run`` and ``main``).

Layout, one concern a module:

``timing``
    measuring one callable: median wall time (:func:`~.timing.median_time`) and the peak extra
    memory of one call (:func:`~.timing.peak_extra_memory`: CUDA allocator counters, or on the
    CPU a ``torch.profiler`` memory profile with kineto's native stderr lines silenced).
``data``
    the benchmark's random inputs: GT boxes, head outputs, model batches. Tests
    (``tests/assigners/test_candidates.py``) and ``dev/gpu/checks.py`` import them from here.
``assign``
    the assignment part: detectron2's FCOS / RetinaNet label assignment and every registered
    assigner as one image's cases, timed over M random GTs (:func:`~.assign.bench_assign`).
``models``
    the train / inference parts: our configs next to detectron2's model-zoo FCOS / RetinaNet on the
    same backbone (:func:`~.models.bench_models`).
``report``
    the markdown tables of a results dict (:func:`~.report.markdown`), built with the tools'
    shared :func:`dense_assign.tools.pipe_table` (``tabulate``'s GitHub format).

This module holds the constants the parts share.
"""

#: Classes of the assignment part's GTs and head outputs (COCO's).
NUM_CLASSES = 80
#: Row names of detectron2's own FCOS / RetinaNet (assignment and model rows); the ratio column
#: divides by the D2_FCOS row.
D2_FCOS = "detectron2 FCOS"
D2_RETINANET = "detectron2 RetinaNet"
#: Network inputs are padded to a multiple of this (detectron2's ResNet-FPN size divisibility).
SIZE_DIVISIBILITY = 32
