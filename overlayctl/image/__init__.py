"""Local images: the host's platform (the verbs on images are engine.images').

Parsing a reference (`name[:tag][@digest]`) is util.reference: the store
parses references too, and it sits below this package.
"""
