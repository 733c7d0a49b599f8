"""The core: plan a range, settled and live days, kept runs, the answer cache, measures."""
