"""Bytes and entropy coding: the .lic container, integer probability tables, constriction wrappers.

Nothing here imports torch; numpy arrays in, bytes out.
"""
