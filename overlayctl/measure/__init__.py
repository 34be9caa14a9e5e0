"""Measuring what containers and layers cost on disk.

``du`` walks a tree and reports allocated bytes, apparent bytes and inodes
exactly as GNU ``du -s`` would, so that ``ps -s``, ``image ls`` and
``system df`` agree with it to the byte.
"""
