"""A test function (imported by module name, as a handler in functions/ is)."""
