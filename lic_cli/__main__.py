"""`python -m lic_cli` is `lic`."""
from .entry import main

main()
