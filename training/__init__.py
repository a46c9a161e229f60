"""Interactions and votes in, adapters out: the feedback store, datasets, fine-tuning, the scheduler."""
