"""Ignite handlers for MONAI's engines (the bundles attach them; no engine is forked)."""

from .handlers import SubmissionWriter, image_id_from_meta
