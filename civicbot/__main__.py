from civicbot.app.cli import main

raise SystemExit(main())
