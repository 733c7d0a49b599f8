"""The Redis layer replicas share: answers, settled days, kept runs and the query budget."""
