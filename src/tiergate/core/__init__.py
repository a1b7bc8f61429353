"""The pure core: policy, window accounting, admission and planning.

Nothing in this package performs I/O or imports a web framework, a database driver or an HTTP
client; time always arrives as an argument. ``tests/unit/test_core_purity.py`` keeps it that way.
"""
