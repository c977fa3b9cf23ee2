"""From an API definition to the stages its requests run: stage contract, compiler, router, post-auth checks."""
