"""lat: LookAhead Tuning — safety-preserving fine-tuning of chat LLMs with partial answer previews."""

__version__ = "0.1.0"
