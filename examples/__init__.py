"""Worked examples of extending ctrlprune: each module registers what it adds when imported."""
