"""Generated container names, adjective_scientist as Docker makes them."""

from __future__ import annotations

import os

_LEFT = (
    "admiring",
    "bold",
    "brave",
    "busy",
    "calm",
    "clever",
    "eager",
    "elegant",
    "fervent",
    "focused",
    "gallant",
    "happy",
    "jolly",
    "keen",
    "kind",
    "lucid",
    "modest",
    "nifty",
    "quirky",
    "serene",
    "sharp",
    "stoic",
    "tender",
    "vibrant",
    "wizardly",
    "zealous",
)
_RIGHT = (
    "babbage",
    "bohr",
    "curie",
    "darwin",
    "dijkstra",
    "einstein",
    "euler",
    "fermi",
    "gauss",
    "hopper",
    "kepler",
    "knuth",
    "lamport",
    "lovelace",
    "maxwell",
    "noether",
    "pascal",
    "ritchie",
    "shannon",
    "thompson",
    "torvalds",
    "turing",
    "wozniak",
)


def generate_name() -> str:
    """A random, readable container name."""
    # os.urandom, not random: the random module costs `run` milliseconds to import.
    left, right = os.urandom(2)
    return f"{_LEFT[left % len(_LEFT)]}_{_RIGHT[right % len(_RIGHT)]}"
