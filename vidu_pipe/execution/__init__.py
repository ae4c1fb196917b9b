"""Running shots at the relay: the HTTP client, reading relay answers, retries, the
create-rate limit, polling and the runner that schedules them all."""
