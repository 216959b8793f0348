"""The RunComfy API: client, pure answer parsing, retry policy, rate limits, deadlines.

Imports only the base modules (errors, jobs, settings). `http` (Retry-After, per-origin memo)
and `deadlines` are shared with `outputs.download`, which may import them; nothing in `api`
imports `outputs`, and `outputs` never imports the API's parser (`answers`) or `client`.
"""
