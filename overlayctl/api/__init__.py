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
"""
