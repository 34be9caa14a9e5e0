"""Local images and image references: import, remove, history, the host's
platform, and parsing `name[:tag][@digest]`.
"""
