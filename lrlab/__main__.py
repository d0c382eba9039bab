from lrlab.cli.main import main

raise SystemExit(main())
