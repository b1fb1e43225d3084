"""The allocator settings every job process makes (models/memory.py)."""
import atexit
import ctypes.util
import gc

from models import memory
from models.memory import freeze_long_lived_objects, limit_allocator_arenas, release_free_memory


def test_the_allocator_settings_take_on_glibc():
    assert limit_allocator_arenas()


def test_handing_memory_back_after_each_call_does_not_look_the_c_library_up_again(monkeypatch):
    """A tier calls it after every model call: find_library runs ldconfig each time."""
    limit_allocator_arenas()
    looked_up = []
    monkeypatch.setattr(ctypes.util, "find_library", looked_up.append)
    release_free_memory()
    release_free_memory()
    assert looked_up == []


def test_freezing_twice_unfreezes_once_at_exit(monkeypatch):
    registered = []
    monkeypatch.setattr(atexit, "register", registered.append)
    memory._unfreeze_at_exit.cache_clear()
    try:
        freeze_long_lived_objects()
        freeze_long_lived_objects()
        assert registered == [gc.unfreeze] and gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        memory._unfreeze_at_exit.cache_clear()  # the next freeze registers for real
