"""Rule-based rewards: math answers, format, language consistency, code execution. No jax imports."""
