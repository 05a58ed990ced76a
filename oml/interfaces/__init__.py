"""Small abstract bases that the rest of the library implements."""
