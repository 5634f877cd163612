"""Errors the engine raises, each with a message a person can act on.

The Django side maps them: ``ModelMissing`` and ``InvalidLora`` are permanent (retrying cannot help),
``GenerationCanceled`` ends a job as canceled, ``BadRequest`` is a client error (HTTP 400 / a failed
variation that is not retried).
"""

from __future__ import annotations


class EngineError(Exception):
    """Base class of every error the engine raises on purpose."""


class ModelMissing(EngineError):
    """A configured model is not available locally; the engine never downloads at request time."""


class InvalidLora(EngineError):
    """A LoRA file was refused: not safetensors, malformed, or not made for the SDXL UNet."""


class GenerationCanceled(EngineError):
    """``should_cancel`` returned True between two denoising steps; the batch was abandoned."""


class BadRequest(EngineError, ValueError):
    """A request parameter is out of range (size, steps, guidance, scheduler, preset...)."""
