"""Image layers as tar streams and as directories.

A layer travels as a tar (possibly compressed) and lives on disk as a
directory that overlayfs stacks as a lowerdir. This package converts between
the two:

- ``compression``: recognise gzip, xz, zstd or bzip2 by their magic bytes
  and hand back the uncompressed tar as a stream;
- ``extract``: unpack a layer tar into a directory without ever letting an
  entry write outside it, turning OCI whiteouts (``.wh.NAME``,
  ``.wh..wh..opq``) into overlay ones, and computing the layer's diff_id;
- ``writer``: pack a layer directory (a committed layer or a container's
  upper dir) into a deterministic tar, turning overlay whiteouts back into
  OCI ones;
- ``du``: the tree walker that measures a directory as GNU ``du -s`` does
  (the store measures every layer it commits).

Nothing is imported here so that ``import overlayctl.layer`` stays free;
import the submodule you need.
"""
