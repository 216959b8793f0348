"""batch_runner: resumable batches of text-to-image jobs against the RunComfy Model API."""

__version__ = "0.1.0"
