"""The allocator settings every job process makes (models/memory.py)."""
import ctypes.util

from models.memory import limit_allocator_arenas, release_free_memory


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
