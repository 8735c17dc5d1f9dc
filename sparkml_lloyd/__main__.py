"""``python -m sparkml_lloyd``: the ``sparkml-lloyd`` command line."""

from sparkml_lloyd.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
