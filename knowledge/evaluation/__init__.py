"""Measuring retrieval on a labelled data set: the BEIR layout, the metrics, and the runner
behind ``lorebot eval retrieval``."""
