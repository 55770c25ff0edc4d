from aiperf.cli import main

raise SystemExit(main())
