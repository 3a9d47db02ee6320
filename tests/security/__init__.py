"""Security tests (issue 5): authentication, authorization, ``_users``, limits, fuzzing."""
