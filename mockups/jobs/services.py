"""Writes for jobs and variations: creation, the workers' claims and results, cancel, regenerate.

Job state lives in the database; queue messages carry ids only. Every write a worker makes is
guarded by the lease it claimed, so at-least-once delivery never runs a stage twice at once
and a redelivered message after a crash finishes the job exactly once.
"""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from mockups.accounts.models import Merchant
from mockups.catalog.models import OutputPreset, Style
from mockups.catalog.selectors import style_get_for_merchant
from mockups.errors import DomainError, NotFound, ValidationFailed
from mockups.jobs.events import event_publish
from mockups.jobs.media import media_url
from mockups.jobs.models import ACTIVE_JOB_STATUSES, Job, JobStatus, Variation, VariationStatus, job_file_path
from mockups.jobs.selectors import job_active_count

if TYPE_CHECKING:
    from mockups.jobs.intake import ValidatedImage

logger = logging.getLogger(__name__)

MAX_VARIATIONS = 5
OUTPUT_FORMATS = ("png", "jpeg", "webp")
WEBHOOK_EVENTS = ("start", "output", "logs", "completed")


class TooManyJobs(DomainError):
    code = "too_many_jobs"
    status_code = 429

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class JobOptions:
    """What a merchant asks for besides the photo. Unset values come from each style's version."""

    styles: list[str]
    count: int | None = None
    seed: int | None = None
    steps: int | None = None
    guidance: float | None = None
    negative_prompt: str | None = None
    output_preset: str | None = None
    output_format: str = "png"
    product_name: str = ""
    webhook_url: str = ""
    webhook_events: list[str] = field(default_factory=lambda: list(WEBHOOK_EVENTS))
    idempotency_key: str = ""
    source: str = "web"

    def validate(self) -> None:
        """Every bad value is named, with the range that would be right."""
        problems: list[str] = []
        if not self.styles:
            problems.append("styles: pick at least one style.")
        if len(self.styles) > MAX_VARIATIONS:
            problems.append(f"styles: at most {MAX_VARIATIONS} styles per job.")
        if self.count is not None:
            if len(self.styles) > 1:
                problems.append("count: give either several styles or one style with a count, not both.")
            if not 1 <= self.count <= MAX_VARIATIONS:
                problems.append(f"count: must be between 1 and {MAX_VARIATIONS}.")
        if self.seed is not None and not 0 <= self.seed < 2**32 - MAX_VARIATIONS:
            problems.append("seed: must be between 0 and 4294967290.")
        if self.steps is not None and not 1 <= self.steps <= 100:
            problems.append("steps: must be between 1 and 100.")
        if self.guidance is not None and not 0.0 <= self.guidance <= 30.0:
            problems.append("guidance: must be between 0 and 30.")
        if self.negative_prompt is not None and len(self.negative_prompt) > 1000:
            problems.append("negative_prompt: at most 1000 characters.")
        if self.output_preset is not None and self.output_preset not in OutputPreset.values:
            problems.append(f"output_preset: must be one of {', '.join(OutputPreset.values)}.")
        if self.output_format not in OUTPUT_FORMATS:
            problems.append(f"output_format: must be one of {', '.join(OUTPUT_FORMATS)}.")
        if len(self.product_name) > 120:
            problems.append("product_name: at most 120 characters.")
        if any(event not in WEBHOOK_EVENTS for event in self.webhook_events):
            problems.append(f"webhook_events_filter: allowed values are {', '.join(WEBHOOK_EVENTS)}.")
        if len(self.idempotency_key) > 200:
            problems.append("Idempotency-Key: at most 200 characters.")
        if problems:
            raise ValidationFailed(" ".join(problems), code="invalid_parameters")

    def variation_count(self) -> int:
        return self.count if self.count is not None else len(self.styles)


def _seed_for(options: JobOptions, index: int) -> int:
    return options.seed + index if options.seed is not None else random.SystemRandom().randrange(2**31)


def job_create(*, merchant: Merchant, image: ValidatedImage, options: JobOptions, user: Any = None) -> Job:
    """Store the validated photo, create the job and its variations, enqueue preparation on commit.

    Idempotent per ``options.idempotency_key``: the same key returns the job it first created.
    Raises TooManyJobs when the merchant already has its limit of queued plus running jobs.
    Nothing half-written is left: if the rows cannot be written, the stored file is removed.
    """
    options.validate()
    if options.idempotency_key:
        existing = Job.objects.filter(merchant=merchant, idempotency_key=options.idempotency_key).first()
        if existing is not None:
            return existing
    styles: list[Style] = [style_get_for_merchant(merchant=merchant, key=key) for key in options.styles]
    if options.count is not None:
        styles = styles * options.count
    _active_limit_check(merchant)  # early, before the photo is stored; again under the lock below

    job = Job(
        merchant=merchant,
        created_by=user if getattr(user, "is_authenticated", False) else None,
        source=options.source,
        product_name=options.product_name.strip(),
        original_width=image.width,
        original_height=image.height,
        original_sha256=image.sha256,
        parameters={
            key: value
            for key, value in {
                "steps": options.steps,
                "guidance": options.guidance,
                "negative_prompt": options.negative_prompt,
                "output_preset": options.output_preset,
                "output_format": options.output_format,
                "seed": options.seed,
            }.items()
            if value is not None
        },
        webhook_url=options.webhook_url,
        webhook_events=list(options.webhook_events),
        idempotency_key=options.idempotency_key,
    )
    name = default_storage.save(job_file_path("original", job, "png"), ContentFile(image.encode_png()))
    try:
        with transaction.atomic():
            # The merchant row is locked so concurrent creates cannot all pass the limit at once.
            Merchant.objects.select_for_update().filter(pk=merchant.pk).first()
            _active_limit_check(merchant)
            job.original.name = name
            job.save()
            Variation.objects.bulk_create(
                Variation(
                    job=job,
                    index=index,
                    style_version=style.current_version,
                    seed=_seed_for(options, index),
                    prompt=style.current_version.render_prompt(options.product_name or "product")
                    if style.current_version
                    else "",
                )
                for index, style in enumerate(styles)
            )
            transaction.on_commit(lambda: _enqueue_prepare(job))
    except IntegrityError:
        default_storage.delete(name)
        if options.idempotency_key:  # a concurrent create with the same key won the race
            return Job.objects.get(merchant=merchant, idempotency_key=options.idempotency_key)
        raise
    except BaseException:
        default_storage.delete(name)
        raise
    return job


def _active_limit_check(merchant: Merchant) -> None:
    limit = merchant.active_job_limit
    if job_active_count(merchant=merchant) >= limit:
        raise TooManyJobs(
            f"You already have {limit} mockup jobs queued or running; wait for one to finish.", retry_after=10
        )


def _enqueue_prepare(job: Job) -> None:
    """The "queued" event, then the message: a worker's first event can never overtake it."""
    from mockups.jobs.tasks import job_prepare

    event_publish(job=job, type="job.status", status=job.status, position=job_queue_position(job=job))
    job_prepare.send(str(job.public_id))


def _enqueue_generate(job: Job) -> None:
    from mockups.jobs.tasks import job_generate

    job_generate.send(str(job.public_id))


# -- queue position and ETA -------------------------------------------------------------------


WAITING_STATUSES = (JobStatus.QUEUED, JobStatus.PREPARING)
ETA_HISTORY = 20


def _ahead_of(job: Job) -> Q:
    """Jobs created before ``job`` (ties broken by id): the queue's order."""
    return Q(created_at__lt=job.created_at) | Q(created_at=job.created_at, id__lt=job.id)


@dataclass(frozen=True)
class QueueView:
    """The queue as one request sees it: places of the jobs it shows, recent GPU time, running jobs.

    Built once per page by :func:`queue_view` in a fixed number of queries, whatever the page's
    size, and read per job with :meth:`position` and :meth:`eta_seconds`.
    """

    positions: dict[int, int]
    seconds_per_job: float | None
    running: int

    def position(self, job: Job) -> int:
        """1 = next to reach the GPU; 0 once running or done."""
        return self.positions.get(job.id, 0) if job.status in WAITING_STATUSES else 0

    def eta_seconds(self, job: Job) -> float | None:
        """Seconds until the job is done, from the recent GPU time per job; None until there is history."""
        if job.is_final:
            return 0.0
        if self.seconds_per_job is None:
            return None
        return self.seconds_per_job * (self.position(job) + self.running)


def queue_view(*, jobs: Sequence[Job]) -> QueueView:
    """Where ``jobs`` stand in the queue of every merchant: at most four queries for any number of jobs.

    Waiting jobs (queued or preparing) are placed by creation: the number of jobs ahead of the
    oldest one shown is counted once, and the waiting jobs from it to the newest one shown are read
    in order (a stretch of the queue, never more than the queue holds).
    """
    waiting = sorted(
        (job for job in jobs if job.status in WAITING_STATUSES), key=lambda j: (j.created_at, j.id)
    )
    positions: dict[int, int] = {}
    if waiting:
        queue = Job.objects.filter(status__in=WAITING_STATUSES)
        first, last = waiting[0], waiting[-1]
        ahead = queue.filter(_ahead_of(first)).count()
        if first.id == last.id:
            positions[first.id] = ahead + 1
        else:
            stretch = (
                queue.exclude(_ahead_of(first))
                .filter(_ahead_of(last) | Q(id=last.id))
                .order_by("created_at", "id")
                .values_list("id", flat=True)
            )
            positions = {job_id: ahead + place for place, job_id in enumerate(stretch, start=1)}
    seconds_per_job: float | None = None
    running = 0
    if any(not job.is_final for job in jobs):
        recent = sorted(
            Job.objects.filter(status=JobStatus.SUCCEEDED, gpu_seconds__gt=0)
            .order_by("-finished_at")
            .values_list("gpu_seconds", flat=True)[:ETA_HISTORY]
        )
        if recent:
            seconds_per_job = recent[len(recent) // 2]
            running = Job.objects.filter(status=JobStatus.GENERATING).count()
    return QueueView(positions=positions, seconds_per_job=seconds_per_job, running=running)


def job_queue_position(*, job: Job) -> int:
    """1 = next to reach the GPU. Jobs ahead: queued or preparing ones created earlier, of any merchant."""
    if job.status not in WAITING_STATUSES:
        return 0
    return Job.objects.filter(status__in=WAITING_STATUSES).filter(_ahead_of(job)).count() + 1


# -- the workers' claims ------------------------------------------------------------------------


class JobNotClaimable(Exception):
    """Another worker holds the job's lease (its message was delivered twice): try again later."""


@dataclass
class Claim:
    job: Job
    token: uuid.UUID

    def renew(self) -> bool:
        """Extend the lease; False when it was lost (the job was canceled or taken over)."""
        expires = timezone.now() + timedelta(seconds=settings.JOB_LEASE_S)
        return (
            Job.objects.filter(pk=self.job.pk, lease_token=self.token).update(lease_expires_at=expires) == 1
        )

    def release(self) -> None:
        Job.objects.filter(pk=self.job.pk, lease_token=self.token).update(
            lease_token=None, lease_expires_at=None
        )


def job_claim(*, public_id: str, stage: str) -> Claim | None:
    """Take the job for one stage ("prepare" or "generate") and count the attempt.

    Returns None when there is nothing to do (the job is final, canceled, or already past this
    stage): the message is then simply acknowledged. Raises JobNotClaimable while another worker
    holds a live lease. Raises GaveUp when the attempt limit is reached: a poison job stops here.
    """
    job = Job.objects.filter(public_id=public_id).first()
    if job is None or job.is_final:
        return None
    if stage == "prepare" and job.prepared_at is not None:
        return None
    if stage == "generate" and job.prepared_at is None:
        return None
    if job.cancel_requested_at is not None:
        job_mark_canceled(job=job)
        return None
    now = timezone.now()
    token = uuid.uuid4()
    status = JobStatus.PREPARING if stage == "prepare" else JobStatus.GENERATING
    claimed = (
        Job.objects.filter(pk=job.pk, status__in=list(ACTIVE_JOB_STATUSES))
        .filter(Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now))
        .update(
            lease_token=token,
            lease_expires_at=now + timedelta(seconds=settings.JOB_LEASE_S),
            attempts=F("attempts") + 1,
            status=status,
            started_at=job.started_at or now,
        )
    )
    if not claimed:
        job.refresh_from_db()
        if job.is_final:
            return None
        raise JobNotClaimable(f"job {public_id} is held by another worker until {job.lease_expires_at}")
    job.refresh_from_db()
    if job.attempts > settings.JOB_MAX_ATTEMPTS:
        job_mark_failed(
            job=job,
            code="gave_up",
            message=f"This job failed {settings.JOB_MAX_ATTEMPTS} times in a row and was stopped. "
            "Try another photo, or contact the operator if it keeps happening.",
        )
        return None
    event_publish(job=job, type="job.status", status=job.status)
    return Claim(job=job, token=token)


def job_mark_prepared(
    *, claim: Claim, cutout: bytes, mask: bytes, control: bytes, method: str, confidence: float
) -> None:
    """Store the cutout, mask and control image and hand the job to the GPU queue (on commit)."""
    job = claim.job
    names = [
        default_storage.save(job_file_path(kind, job, "png"), ContentFile(data))
        for kind, data in (("cutout", cutout), ("mask", mask), ("control", control))
    ]
    with transaction.atomic():
        updated = Job.objects.filter(pk=job.pk, lease_token=claim.token, prepared_at__isnull=True).update(
            cutout=names[0],
            mask=names[1],
            control=names[2],
            cutout_method=method,
            cutout_confidence=confidence,
            prepared_at=timezone.now(),
            status=JobStatus.QUEUED,
            attempts=0,
            lease_token=None,
            lease_expires_at=None,
        )
        if not updated:
            transaction.on_commit(lambda: _delete_files(names))
            return
        job.refresh_from_db()
        # Events first, the GPU message last: on commit they go out in this order, so the GPU
        # worker's "generating" can never be numbered or delivered before this stage's events.
        event_publish(
            job=job,
            type="job.cutout",
            cutout=media_url(job.cutout.name),
            mask=media_url(job.mask.name),
            confidence=confidence,
            method=method,
        )
        event_publish(job=job, type="job.status", status=job.status, position=job_queue_position(job=job))
        transaction.on_commit(lambda: _enqueue_generate(job))


def _delete_files(names: list[str]) -> None:
    for name in names:
        default_storage.delete(name)


def variation_mark_started(*, claim: Claim, indices: list[int]) -> None:
    Variation.objects.filter(job=claim.job, index__in=indices, status=VariationStatus.QUEUED).update(
        status=VariationStatus.GENERATING, started_at=timezone.now(), attempts=F("attempts") + 1
    )


def variation_mark_succeeded(
    *,
    claim: Claim,
    index: int,
    generation: int,
    data: bytes,
    fmt: str,
    width: int,
    height: int,
    fidelity_max_delta: int,
    gpu_seconds: float,
) -> Variation | None:
    """Store one finished image. A stale result (older generation, lost lease) is dropped, not stored."""
    job = claim.job
    ext = "jpg" if fmt == "jpeg" else fmt
    name = default_storage.save(job_file_path(f"variation-{index}", job, ext), ContentFile(data))
    with transaction.atomic():
        updated = (
            Variation.objects.filter(
                job=job,
                index=index,
                generation=generation,
                job__lease_token=claim.token,
            )
            .exclude(status=VariationStatus.SUCCEEDED)
            .update(
                status=VariationStatus.SUCCEEDED,
                image=name,
                image_format=fmt,
                width=width,
                height=height,
                fidelity_max_delta=fidelity_max_delta,
                gpu_seconds=gpu_seconds,
                step=F("steps"),
                finished_at=timezone.now(),
                error="",
            )
        )
        if not updated:
            transaction.on_commit(lambda: default_storage.delete(name))
            return None
        Job.objects.filter(pk=job.pk).update(gpu_seconds=F("gpu_seconds") + gpu_seconds)
    variation = Variation.objects.get(job=job, index=index)
    event_publish(
        job=job,
        type="variation.succeeded",
        index=index,
        image=media_url(variation.image.name),
        fidelity_max_delta=fidelity_max_delta,
        seed=variation.seed,
    )
    return variation


def variation_mark_failed(*, job: Job, index: int, message: str) -> None:
    Variation.objects.filter(job=job, index=index).exclude(status=VariationStatus.SUCCEEDED).update(
        status=VariationStatus.FAILED, error=message, finished_at=timezone.now()
    )
    event_publish(job=job, type="variation.failed", index=index, error=message)


def job_finish(*, claim: Claim) -> Job:
    """After the GPU stage: succeeded when every variation has its image, failed otherwise."""
    job = claim.job
    statuses = set(Variation.objects.filter(job=job).values_list("status", flat=True))
    final = JobStatus.SUCCEEDED if statuses == {VariationStatus.SUCCEEDED} else JobStatus.FAILED
    Job.objects.filter(pk=job.pk, lease_token=claim.token).update(
        status=final,
        finished_at=timezone.now(),
        lease_token=None,
        lease_expires_at=None,
        error="" if final == JobStatus.SUCCEEDED else "Some variations could not be generated.",
    )
    job.refresh_from_db()
    event_publish(job=job, type="job.status", status=job.status)
    return job


def job_mark_failed(*, job: Job, code: str, message: str) -> None:
    """A permanent failure: the job stops, with a message the merchant can act on."""
    with transaction.atomic():
        Job.objects.filter(pk=job.pk).exclude(status__in=[JobStatus.SUCCEEDED, JobStatus.CANCELED]).update(
            status=JobStatus.FAILED,
            error_code=code,
            error=message,
            finished_at=timezone.now(),
            lease_token=None,
            lease_expires_at=None,
        )
        Variation.objects.filter(job=job).exclude(status=VariationStatus.SUCCEEDED).update(
            status=VariationStatus.FAILED, error=message
        )
    job.refresh_from_db()
    event_publish(job=job, type="job.status", status=job.status, error=message, code=code)


def job_mark_canceled(*, job: Job) -> None:
    with transaction.atomic():
        Job.objects.filter(pk=job.pk).exclude(status__in=[JobStatus.SUCCEEDED, JobStatus.FAILED]).update(
            status=JobStatus.CANCELED, finished_at=timezone.now(), lease_token=None, lease_expires_at=None
        )
        Variation.objects.filter(job=job).exclude(status=VariationStatus.SUCCEEDED).update(
            status=VariationStatus.CANCELED
        )
    job.refresh_from_db()
    event_publish(job=job, type="job.status", status=job.status)


def job_cancel(*, job: Job) -> Job:
    """Ask for a job to stop. Queued: canceled now and never reaches the GPU. Running: stops between steps."""
    if job.is_final:
        return job
    now = timezone.now()
    Job.objects.filter(pk=job.pk, cancel_requested_at__isnull=True).update(cancel_requested_at=now)
    job.refresh_from_db()
    if job.lease_token is None or (job.lease_expires_at and job.lease_expires_at < now):
        job_mark_canceled(job=job)
    return job


def job_cancel_requested(*, job: Job) -> bool:
    return Job.objects.filter(pk=job.pk, cancel_requested_at__isnull=False).exists()


def variation_regenerate(*, job: Job, index: int, seed: int | None = None) -> Variation:
    """Make one variation again with a new seed; the job goes back through the GPU queue."""
    if job.status in ACTIVE_JOB_STATUSES:
        raise ValidationFailed(
            "Wait until this job has finished before regenerating a variation.", code="job_running"
        )
    if job.prepared_at is None:
        raise ValidationFailed(
            "This job never got past background removal; start a new one.", code="not_prepared"
        )
    variation = Variation.objects.filter(job=job, index=index).first()
    if variation is None:
        raise NotFound(f"This job has no variation {index}.")
    if seed is not None and not 0 <= seed < 2**32:
        raise ValidationFailed("seed: must be between 0 and 4294967295.")
    with transaction.atomic():
        Variation.objects.filter(pk=variation.pk).update(
            seed=seed if seed is not None else random.SystemRandom().randrange(2**31),
            generation=F("generation") + 1,
            status=VariationStatus.QUEUED,
            step=0,
            error="",
            finished_at=None,
        )
        Job.objects.filter(pk=job.pk).update(
            status=JobStatus.QUEUED,
            attempts=0,
            finished_at=None,
            cancel_requested_at=None,
            error="",
            error_code="",
        )
        job.refresh_from_db()
        event_publish(job=job, type="job.status", status=job.status, position=job_queue_position(job=job))
        transaction.on_commit(lambda: _enqueue_generate(job))  # after the event (see job_mark_prepared)
    variation.refresh_from_db()
    return variation


def job_requeue_stranded() -> int:
    """Re-send jobs whose messages were lost (the embedded broker keeps nothing across restarts).

    Called when an embedded worker starts. Returns how many jobs were sent again.
    """
    count = 0
    for job in Job.objects.filter(status__in=list(ACTIVE_JOB_STATUSES)):
        Job.objects.filter(pk=job.pk).update(lease_token=None, lease_expires_at=None)
        (_enqueue_generate if job.prepared_at else _enqueue_prepare)(job)
        count += 1
    return count
