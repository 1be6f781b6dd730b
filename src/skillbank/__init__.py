"""skillbank: a versioned library of neural-network skills."""
