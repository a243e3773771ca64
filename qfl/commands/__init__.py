"""Sub-commands of the ``qfl`` command line, one module each."""
