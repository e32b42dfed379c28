"""Per-language facts (code-interpreter.md §4.2, §4.3, §4.7): names, kernel specs, env-var statements."""

from __future__ import annotations

DEFAULT_LANGUAGE = "python"
_ALIASES = {"js": "javascript", "ts": "typescript"}
# §4.3: the kernel spec asked for; `python` is Jupyter's native `python3` spec.
_KERNEL_SPECS = {"python": "python3", "typescript": "javascript"}


def normalize(language: str | None) -> str:
    """§4.2: null/empty -> python; lower-cased and trimmed; js/ts aliases."""
    if not language or not language.strip():
        return DEFAULT_LANGUAGE
    lowered = language.strip().lower()
    return _ALIASES.get(lowered, lowered)


def kernel_spec_name(language: str) -> str:
    return _KERNEL_SPECS.get(language, language)


def set_env_statement(language: str, key: str, value: str) -> str | None:
    """One statement setting K=V in the kernel's process env; None for languages without one (§4.7).

    Q9: values and keys are escaped (repr), so quotes and backslashes survive. `__import__` keeps the
    name `os` out of the user's namespace.
    """
    if language == "python":
        return f"__import__('os').environ[{key!r}] = {value!r}"
    return None


def unset_env_statement(language: str, key: str) -> str | None:
    if language == "python":
        return f"__import__('os').environ.pop({key!r}, None)"
    return None
