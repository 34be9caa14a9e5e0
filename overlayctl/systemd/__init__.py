"""systemd integration: generating the unit files (see systemd/ at the top of
the repository, which are renderings of systemd.units).
"""
