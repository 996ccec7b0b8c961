"""``infra.gc_freeze``: what exists when a process is set up is left out of later full collections."""

from __future__ import annotations

import gc

from infra.gc_freeze import freeze_long_lived


def test_objects_made_before_the_freeze_are_left_out_of_later_collections() -> None:
    before = {"made": ["at start-up"]}
    try:
        freeze_long_lived()
        after = {"made": ["by the work"]}
        scanned = {id(obj) for obj in gc.get_objects()}
        assert gc.get_freeze_count() > 0
        assert id(before) not in scanned
        assert id(after) in scanned
    finally:
        gc.unfreeze()  # give the test process its collections back
