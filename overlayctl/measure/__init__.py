"""Measuring what containers and layers cost on disk: `system df`, growth
over time, live stats.

The tree walker itself (``du``, exactly as GNU ``du -s`` counts, so that
``ps -s``, ``image ls`` and ``system df`` agree with it to the byte) is
layer.du: the store measures every layer it commits, and sits below here.
"""
