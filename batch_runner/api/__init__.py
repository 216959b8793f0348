"""The RunComfy API: client, pure answer parsing, retry policy, rate limits, deadlines."""
