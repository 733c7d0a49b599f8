"""The stores: sources, their pools and budgets, and the repository that reads them."""
