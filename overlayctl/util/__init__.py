"""Small helpers every layer may use and that use nothing of overlayctl but
errors and paths: JSON I/O, human sizes and durations, names, fault points,
out-of-space handling, image references, /proc helpers, detach keys.

The detached monitor imports from here too: keep this file empty of imports.
"""
