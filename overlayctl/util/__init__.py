"""Small helpers every layer may use: the one parser of Docker's sizes, and
(as the layout settles) JSON I/O, human sizes and durations, names, fault
points. Nothing here imports from the rest of overlayctl but errors.py."""
