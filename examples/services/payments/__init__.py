"""The payments service: charge an order once, announce payment:created (queue group payments-service)."""
