"""Report writers: terminal (rich), Markdown. Each reads records; none measures anything."""
