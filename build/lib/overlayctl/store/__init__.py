"""The store: the SQLite catalog and the directories it describes.

Layers, images, tags and containers live here. The store hands the runtime a
description of directories (lowerdirs, upperdir, workdir) and never mounts
anything or knows about namespaces. Every change is staged under tmp/,
flushed, renamed into place, then committed to the catalog; removal commits
first and deletes after, so a crash leaves at worst an orphan directory,
never a catalog entry without its data.
"""

from overlayctl.store.store import Store

__all__ = ["Store"]
