"""The tickets service: sells tickets, reserved while an order holds them (queue group tickets-service)."""
