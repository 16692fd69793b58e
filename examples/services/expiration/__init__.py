"""The expiration reference service: no HTTP, no database; JetStream itself keeps the timers."""
