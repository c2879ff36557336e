"""Hardware sources: one module per kind of hardware, each with the shape of :mod:`.base`."""
