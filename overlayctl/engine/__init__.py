"""The verbs both front ends call: create, start, run, stop, kill, restart,
wait, pause, exec, attach, rm, inspect, prune, commit/diff/export.

The CLI parses and prints; everything it does to a container goes through a
function here, so a second front end gets the same behaviour by calling the
same functions.
"""
