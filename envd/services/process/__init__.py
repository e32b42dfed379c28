"""process.Process: spawning user processes, fanning their output out, and the RPC adapter (spec/envd.md §6)."""
