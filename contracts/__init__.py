"""What crosses the bus: the subject catalogue, message structs, error codes and header names.

This package imports nothing but msgspec and the standard library, so any client can depend on it.
"""
