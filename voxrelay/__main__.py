from voxrelay.cli import main

raise SystemExit(main())
