"""The surfaces with schedulers of their own beside the API: crons (`crons`: ticks taken once across
processes), webhooks (`webhooks`: deliveries claimed and retried) and the store the graphs share
with clients (`store`)."""
