"""Everything about models, nothing of Beam. Importing the package makes torch's OpenMP threads
sleep rather than spin while they wait (models/cpus.py), before any module here loads torch."""
from models.cpus import prefer_passive_openmp_waits

prefer_passive_openmp_waits()
