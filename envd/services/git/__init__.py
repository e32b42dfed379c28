"""The native git service: dulwich in-process, each operation as the request's user (proto/git/git.proto).

Core functions take `(path, home, ...)` plain values: the repository path (already resolved) and the user's
home (their git config); they run in runner.GitRunner's threads, which carry the user's identity and config.
"""
