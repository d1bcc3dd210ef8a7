"""What a trial's process does once for all the trials Ray Tune runs in it (actor reuse):
freeze the process's lifelong objects out of the garbage collector's sight, so the collection
each later trial starts with walks only what trials made (search.worker.trainable)."""
from __future__ import annotations

import subprocess
import sys

_PROBE = """
import gc, sys, weakref
from search.worker.trainable import freeze_process_objects
first = freeze_process_objects()
frozen = gc.get_freeze_count()
second = freeze_process_objects()

class Node:  # a trial's garbage in a reference cycle, made after the freeze
    pass
a, b = Node(), Node()
a.other, b.other = b, a
alive = weakref.ref(a)
del a, b
gc.collect()
print(first, second, frozen, gc.get_freeze_count(), "torch._dynamo" in sys.modules, alive() is None)
"""


def test_the_first_trial_freezes_the_process_objects_once_and_later_garbage_is_still_collected():
    # a fresh interpreter: freezing pytest's own process would keep its cycles for good
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True, timeout=300)
    first, second, frozen, frozen_after, dynamo, collected = out.stdout.split()
    assert (first, second) == ("True", "False")  # once per process
    # torch, Ray Tune, sklearn, ser_core and torch._dynamo: hundreds of thousands of objects
    assert int(frozen) > 100_000 and int(frozen_after) == int(frozen)
    assert dynamo == "True"  # imported before the freeze, not by a later trial's first optimizer step
    assert collected == "True"  # cycles a trial leaves after the freeze are still collected
