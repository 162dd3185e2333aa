"""Config dataclasses of the Gemma-3 <reminder> fine-tuning jobs (filled in by the finetune work)."""
JOBS: dict = {}
