"""Stylize videos frame by frame in constant memory; needs the ``video`` extra (PyAV) except for
``stabilize``.

``sources`` opens and checks the input (a video file or a folder of frames), ``sinks`` checks the
output and encodes (a video file with the input's sound, or a folder of PNGs), ``pipeline``
overlaps decoding, the network and encoding in threads with bounded queues, ``stabilize`` steadies
the frames without optical flow, and ``job`` ties them into one run (``VideoJob``). Nothing here
imports training code.
"""
