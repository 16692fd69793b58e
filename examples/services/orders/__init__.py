"""The orders service: orders reserve tickets until paid or expired (queue group orders-service)."""
