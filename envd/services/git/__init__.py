"""The native git service: dulwich in-process, each operation as the request's user (proto/git/git.proto)."""
