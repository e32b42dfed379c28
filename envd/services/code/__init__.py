"""Code execution in Jupyter kernels (code-interpreter.md): contexts, kernels, message routing, results."""
