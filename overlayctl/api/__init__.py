"""The Docker Engine API, served from `overlayctl system service`.

A second front end beside cli/: it parses HTTP requests, calls engine/ and
writes Docker's JSON. It keeps no state of its own: every container has its
own supervisor, every answer is read from the store, so the service can exit
when idle and a new one sees everything.

- http.py: the plumbing every handler uses (engine calls off the event
  loop, Docker's errors, query parsing, streamed JSON).
- app.py: the application, its middlewares (the /v1.NN prefix, errors) and
  the route table of every area module.
- service.py: sockets (unix, systemd's LISTEN_FDS, tcp), idle exit, sd_notify.
- one module per area: system, containers, exec, images, networks, volumes.

Importing this package makes aiohttp's own `__init__` lazy (below): the
service's cold start and idle memory are goals, and that file is mostly
aiohttp's HTTP client, which the server never uses.
"""

from __future__ import annotations

import sys


def _lazy_aiohttp() -> None:
    """Put aiohttp in sys.modules as a bare package whose `__init__` runs on
    the first use of a name it defines.

    `from aiohttp import web` then loads the server's modules alone. The
    full `__init__` imports the client too, whose connector builds two TLS
    contexts at import time and loads the system's CA certificates into
    them: about 120 ms and 4 MB, a third of the service's cold start, for
    nothing a server does. Anything that does use a package-level name
    (`aiohttp.ClientSession`, `from aiohttp import WSMsgType`) gets the
    complete package, exactly as without this.
    """
    if "aiohttp" in sys.modules:
        return
    import importlib.util
    from importlib.machinery import PathFinder

    spec = importlib.util.find_spec("aiohttp")
    if spec is None or spec.loader is None or not spec.submodule_search_locations or not spec.origin:
        return
    version = None
    try:
        with open(spec.origin, encoding="utf-8") as f:
            first = f.readline()  # aiohttp's __init__ begins `__version__ = "3.x.y"`
    except OSError:
        return
    if first.startswith("__version__ = "):
        version = first.split("=", 1)[1].strip().strip("\"'")
    if not version:
        return  # not the layout this relies on: the ordinary import
    package = importlib.util.module_from_spec(spec)
    loader = spec.loader

    def complete(name: str) -> object:
        # PEP 562: called for a name the bare package lacks. `from . import
        # hdrs` asks first (hasattr) and imports the submodule on an
        # AttributeError, so a submodule's name is left to that. Any other
        # name: run the real __init__ into the package once; the submodules
        # already loaded stay as they are.
        if PathFinder.find_spec(f"aiohttp.{name}", package.__path__) is not None:
            raise AttributeError(name)
        package.__dict__.pop("__getattr__", None)
        loader.exec_module(package)
        return getattr(package, name)

    # __version__: aiohttp.http reads it (its default Server header).
    package.__dict__.update(__version__=version, __getattr__=complete)
    sys.modules["aiohttp"] = package


_lazy_aiohttp()
