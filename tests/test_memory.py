"""The allocator settings every job process makes (models/memory.py)."""
import atexit
import ctypes.util
import gc

from models import memory
from models.memory import prepare_collector_for_records, limit_allocator_arenas, release_free_memory


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
    thresholds = gc.get_threshold()
    try:
        prepare_collector_for_records()
        prepare_collector_for_records()
        assert registered == [gc.unfreeze] and gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
        memory._unfreeze_at_exit.cache_clear()  # the next freeze registers for real


def test_a_worker_collects_young_objects_less_often_but_never_more_often_than_it_did():
    thresholds = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        memory.prepare_collector_for_records()
        assert gc.get_threshold() == (memory.YOUNG_GENERATION_OBJECTS, 10, 10)
        gc.set_threshold(10 * memory.YOUNG_GENERATION_OBJECTS, 5, 5)
        memory.prepare_collector_for_records()
        assert gc.get_threshold() == (10 * memory.YOUNG_GENERATION_OBJECTS, 5, 5)
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
