"""`python -m demo_site` is a shortcut for `python -m demo_site.generate`."""

from __future__ import annotations

from demo_site.generate import main

if __name__ == "__main__":
    raise SystemExit(main())
