"""ml_platform: one spec per model, its whole lifecycle as Dagster assets.

OpenMP threads that wait for work sleep rather than spin (`OMP_WAIT_POLICY=PASSIVE`, unless it is set already).
LightGBM's threads otherwise spin on their cores between parallel steps, so any other busy process on those cores
(a second run, a Dask worker, a server) slows a training many times over: the bundled spec's training took 54 to
70 s spinning and 3.7 to 4.3 s sleeping, with other work on this 2-core machine (the same model bytes). Set here,
before LightGBM's OpenMP runtime loads on its first import; child processes inherit it.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
