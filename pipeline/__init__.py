"""The cascade job. Importing it first limits glibc's malloc arenas (models/memory.py):
the setting only applies to arenas created afterwards, so it must come before torch, gRPC
and Beam start their threads, which is before anything else of the job is imported."""
from models.memory import limit_allocator_arenas

limit_allocator_arenas()
