"""Models: the domain (links, rules, errors) and the inbound events."""
