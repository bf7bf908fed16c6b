"""Independent random streams from one run seed.

Seeding every component with the run seed itself would give them the *same* stream: a random subset
drawn with seed 0 would then coincide with the labels corrupted with seed 0. Each purpose gets its own
seed instead, derived by hashing.
"""

from __future__ import annotations

import hashlib


def derive_seed(seed: int, purpose: str) -> int:
    """A 63-bit seed for ``purpose``, a deterministic function of the run ``seed``."""
    digest = hashlib.sha256(f"{seed}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1
