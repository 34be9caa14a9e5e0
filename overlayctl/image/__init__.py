"""Local images: import, remove, history, and the host's platform.

Parsing a reference (`name[:tag][@digest]`) is util.reference: the store
parses references too, and it sits below this package.
"""
