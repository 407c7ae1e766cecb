"""A crashed worker process is restarted inside a container too, as it is under a plain `bentoml serve`.

BentoML 1.4.40 builds its circus watchers with ``respawn=not running_inside_container()``
(``bentoml.serving.create_watcher``; "inside a container" = ``BENTOML_CONTAINERIZED``, which its
Dockerfile sets). Circus then stops the whole server only once *no* worker is left. So in the image a
GPU instance with 4 workers that loses one (OOM killer, a segfault in a native library) serves on 3
for the rest of its life, with nothing in the logs or the health checks to say so; with 1 worker the
container exits and Docker's restart policy brings it back, cold. With respawn, circus restarts the one
worker (model load and warm-up, seconds) while the others keep serving, everywhere.

The server process imports the service before it builds its watchers, so installing this at import
is in time.
"""

from __future__ import annotations

import bentoml.serving


def _always_respawn() -> bool:
    return False  # "not inside a container", as far as respawning workers is concerned


def install() -> None:
    bentoml.serving.running_inside_container = _always_respawn  # type: ignore[assignment]  # (an lru_cache)
