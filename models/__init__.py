"""Networks and entropy models of the lic zoo (no file or CLI knowledge here)."""
