"""Benchmarks (`make bench`): each prints envd's figure next to the raw operation measured in the same run."""
