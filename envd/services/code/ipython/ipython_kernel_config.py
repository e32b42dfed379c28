# IPython kernel configuration for envd's Python contexts (code-interpreter.md §5.5).
c = get_config()  # noqa: F821
# Tracebacks in `error` events carry no ANSI colour codes.
c.InteractiveShell.colors = "nocolor"
# Long lists/dicts are not truncated in text/plain.
c.PlainTextFormatter.max_seq_length = 0
# No history database: kernels are throwaway and the profile dir may be shared.
c.HistoryManager.enabled = False
