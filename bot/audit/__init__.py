"""The entry audit: markers, classification, the CDC scan and its cursor."""
