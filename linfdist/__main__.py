from linfdist.cli import main

raise SystemExit(main())
