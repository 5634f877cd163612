"""Each GPU worker process reports itself every few seconds and carries out LoRA preload requests.

The heartbeat is a daemon thread started once the engine is ready (``mockups.worker`` for worker
processes, ``mockups.embedded`` for the embedded default). Each tick it

1. hands LoRAs whose preload was requested (``Lora.preload_requested_at``) since this process last
   did so to the engine's ``lora_preload``, on a separate thread: the engine may hold its lock for a
   whole job, and a busy worker must not look dead because a preload waits for that job;
2. upserts this process's :class:`~mockups.fleet.models.GpuWorker` row with the engine's health and
   the LoRAs in its RAM cache.

Nothing here is needed for a changed LoRA or style to take effect: the pipeline reads the style
version and the LoRA's sha256 from the database for every job and the engine reloads a file whose
hash changed. Preloading only moves the first read of a file off the request path.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone

from mockups.catalog.models import Lora
from mockups.fleet.models import GpuWorker

logger = logging.getLogger(__name__)

# Rows of workers silent for this long are deleted by the other workers' heartbeats.
FORGET_AFTER = timedelta(days=1)

EngineHealth = Callable[[], Mapping[str, Any]]
LoraPreload = Callable[[Any], Any]


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def json_safe(value: Any) -> Any:
    """``value`` made storable in a JSON column on every database: NaN/inf become None (PostgreSQL's
    jsonb refuses them), tuples and sets become lists, anything else unknown becomes its ``str``."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_safe(item) for item in value]
    return str(value)


def models_resident(health: Mapping[str, Any]) -> list[str]:
    """The sources (hub id or local folder) of the base model and ControlNet an engine has loaded."""
    return [str(health[key]) for key in ("base_model", "controlnet") if health.get(key)]


def cached_lora_hashes(health: Mapping[str, Any]) -> list[str]:
    """The sha256 of each LoRA an engine's health report says is in its RAM cache."""
    loras = health.get("loras")
    entries: Any = loras.get("cached") if isinstance(loras, Mapping) else loras
    hashes: list[str] = []
    for entry in entries if isinstance(entries, list) else []:
        sha = entry.get("sha256") if isinstance(entry, Mapping) else entry
        if isinstance(sha, str) and sha:
            hashes.append(sha.lower())
    return hashes


@dataclass
class Heartbeat:
    """This process's reporter. :meth:`tick` does one round synchronously; :meth:`start` runs it
    every ``interval_s`` seconds on a daemon thread until :meth:`stop`."""

    get_engine_health: EngineHealth
    lora_preload: LoraPreload | None = None
    queues: tuple[str, ...] = ()
    interval_s: float = 5.0
    on_tick: Callable[[GpuWorker], None] | None = None
    name: str = field(default_factory=worker_name)
    started_at: datetime = field(default_factory=timezone.now)
    # LoRA pk -> the preload request time this process carried out (or tried to).
    preloaded: dict[int, datetime] = field(default_factory=dict)
    preload_errors: dict[str, str] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _preloader: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- one round --------------------------------------------------------------------------------

    def tick(self) -> GpuWorker:
        """Start pending preloads, then write this worker's row; returns the row."""
        if not connection.in_atomic_block:  # a caller's open transaction is not ours to drop
            close_old_connections()
        self._preload_pending()
        worker = self._report()
        if self.on_tick is not None:
            self.on_tick(worker)
        return worker

    def _pending_preloads(self) -> list[Lora]:
        requested = Lora.objects.filter(preload_requested_at__isnull=False).only(
            "id", "name", "file", "sha256", "preferred_weight", "preload_requested_at"
        )
        with self._lock:
            return [lora for lora in requested if self.preloaded.get(lora.pk) != lora.preload_requested_at]

    def _preload_pending(self) -> None:
        if self.lora_preload is None:
            return
        with self._lock:
            if self._preloader is not None and self._preloader.is_alive():
                return  # still working on the previous batch; the next tick looks again
        pending = self._pending_preloads()
        if not pending:
            return
        thread = threading.Thread(
            target=self.preload, args=(pending,), name="fleet-lora-preload", daemon=True
        )
        with self._lock:
            self._preloader = thread
        thread.start()

    def preload(self, loras: Iterable[Lora]) -> None:
        """Hand each LoRA to the engine; a failure is logged and reported, not retried until the next
        request (a broken file would fail again every few seconds otherwise)."""
        from gpu_runtime.types import LoraSpec

        assert self.lora_preload is not None
        try:
            for lora in loras:
                requested_at = lora.preload_requested_at
                assert requested_at is not None
                try:
                    self.lora_preload(
                        LoraSpec(
                            name=lora.name,
                            path=lora.file.path,
                            sha256=lora.sha256,
                            weight=lora.preferred_weight,
                        )
                    )
                except Exception as exc:
                    logger.exception("could not preload LoRA %s", lora.name)
                    with self._lock:
                        self.preload_errors[lora.sha256] = f"{lora.name}: {exc}"
                else:
                    logger.info("LoRA %s preloaded", lora.name)
                    with self._lock:
                        self.preload_errors.pop(lora.sha256, None)
                with self._lock:
                    self.preloaded[lora.pk] = requested_at
        finally:
            if threading.current_thread() is not threading.main_thread():
                connection.close()  # this thread's own connection; the thread ends here

    def wait_for_preloads(self, timeout: float | None = None) -> None:
        """Block until the preloads started by the last tick are done (for tests and shutdown)."""
        with self._lock:
            thread = self._preloader
        if thread is not None:
            thread.join(timeout)

    def _report(self) -> GpuWorker:
        try:
            health = dict(self.get_engine_health())
        except Exception as exc:  # the row still says the process is alive, and what is wrong
            logger.exception("the engine's health report failed")
            health = {"error": f"{type(exc).__name__}: {exc}"}
        health.setdefault("models_resident", models_resident(health))
        hashes = cached_lora_hashes(health)
        names = dict(Lora.objects.filter(sha256__in=hashes).values_list("sha256", "name")) if hashes else {}
        with self._lock:
            if self.preload_errors:
                health["preload_errors"] = sorted(self.preload_errors.values())
            done = max(self.preloaded.values(), default=None)
        now = timezone.now()
        worker, _ = GpuWorker.objects.update_or_create(
            name=self.name,
            defaults={
                "hostname": socket.gethostname(),
                "pid": os.getpid(),
                "queues": sorted(self.queues),
                "started_at": self.started_at,
                "last_seen_at": now,
                "health": json_safe(health),
                "loras": [{"sha256": sha, "name": names.get(sha, "")} for sha in hashes],
                "preload_done_at": done,
            },
        )
        GpuWorker.objects.filter(last_seen_at__lt=now - FORGET_AFTER).delete()
        return worker

    # -- the thread -------------------------------------------------------------------------------

    def start(self) -> Heartbeat:
        thread = threading.Thread(target=self._run, name="fleet-heartbeat", daemon=True)
        self._thread = thread
        thread.start()
        return self

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    self.tick()
                except Exception:  # the database may be away for a moment; try again next tick
                    logger.exception("heartbeat of %s failed", self.name)
                self._stop.wait(self.interval_s)
        finally:
            connection.close()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.wait_for_preloads(timeout)


_started: Heartbeat | None = None
_started_lock = threading.Lock()


def heartbeat_start(
    get_engine_health: EngineHealth,
    *,
    lora_preload: LoraPreload | None = None,
    queues: Iterable[str] | None = None,
    interval_s: float | None = None,
    on_tick: Callable[[GpuWorker], None] | None = None,
) -> Heartbeat:
    """Start this process's heartbeat thread (once per process; later calls return the running one).

    ``get_engine_health`` is the engine's ``health`` and ``lora_preload`` its ``lora_preload``;
    ``queues`` are the queues this process consumes (None: all of them, as a Dramatiq worker started
    without ``-Q`` does). Ticks every ``interval_s`` seconds (``FLEET_HEARTBEAT_S`` by default);
    ``on_tick`` is called with the worker's row after each.
    """
    from mockups.queue import ALL_QUEUES

    global _started
    with _started_lock:
        if _started is None:
            _started = Heartbeat(
                get_engine_health=get_engine_health,
                lora_preload=lora_preload,
                queues=tuple(ALL_QUEUES if queues is None else queues),
                interval_s=settings.FLEET_HEARTBEAT_S if interval_s is None else interval_s,
                on_tick=on_tick,
            ).start()
        return _started
